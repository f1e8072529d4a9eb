-- The model a span is attributed to: the one the provider answered with, else the one requested.
-- Every reader groups and filters by this one column, so the rule has one home. An ALIAS column
-- is computed when read and takes no space.
ALTER TABLE spans ADD COLUMN IF NOT EXISTS model LowCardinality(String)
    ALIAS if(response_model != '', response_model, request_model);
