-- Each ledger's findings summed per detector, on the ledger's own row, so that the waste report
-- reads one row per trace instead of every finding (ten or more a trace). Parallel arrays, one
-- entry per detector that found something in the trace:
--   detectors           the detector
--   detector_findings   how many findings it made
--   detector_usd        their wasted dollars (a finding of unknown price counts 0)
--   detector_tokens     their wasted tokens
--   detector_top_usd    the dollars of its costliest finding
-- detectors_recorded is 1 on ledgers written with them; a ledger written before has 0, and its
-- findings are read one by one until the trace is analysed again.
ALTER TABLE trace_waste
    ADD COLUMN IF NOT EXISTS detectors Array(LowCardinality(String)),
    ADD COLUMN IF NOT EXISTS detector_findings Array(UInt32),
    ADD COLUMN IF NOT EXISTS detector_usd Array(Float64),
    ADD COLUMN IF NOT EXISTS detector_tokens Array(UInt64),
    ADD COLUMN IF NOT EXISTS detector_top_usd Array(Float64),
    ADD COLUMN IF NOT EXISTS detectors_recorded UInt8;
