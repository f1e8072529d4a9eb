-- Each ledger's cost and waste per model, on the ledger's own row, so that the waste report by
-- model reads one row per trace instead of every model call's span and every finding. Parallel
-- arrays, one entry per model that served a billable call of the trace (`spans.model`):
--   call_models        the model
--   call_model_usd     the cost of its billable calls (a call of unknown price counts 0)
-- and one entry per model and detector of the trace's findings (the model of the call charged):
--   finding_models     the model
--   finding_detectors  the detector
--   finding_counts     how many findings
--   finding_usd        their wasted dollars (a finding of unknown price counts 0)
--   finding_tokens     their wasted tokens
-- models_recorded is 1 on ledgers written with them; a ledger written before has 0, and its
-- spans and findings are read one by one until the trace is analysed again.
ALTER TABLE trace_waste
    ADD COLUMN IF NOT EXISTS call_models Array(LowCardinality(String)),
    ADD COLUMN IF NOT EXISTS call_model_usd Array(Float64),
    ADD COLUMN IF NOT EXISTS finding_models Array(LowCardinality(String)),
    ADD COLUMN IF NOT EXISTS finding_detectors Array(LowCardinality(String)),
    ADD COLUMN IF NOT EXISTS finding_counts Array(UInt32),
    ADD COLUMN IF NOT EXISTS finding_usd Array(Float64),
    ADD COLUMN IF NOT EXISTS finding_tokens Array(UInt64),
    ADD COLUMN IF NOT EXISTS models_recorded UInt8;
