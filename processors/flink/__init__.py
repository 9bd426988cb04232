"""The feature groups as a PyFlink job (`affresco process run --engine flink`).

Only `processors.flink.job` imports `pyflink`, and it runs in the flink venv (`make flink-venv`),
never in the main one: `launcher` (main venv) writes the job's config and starts it there. The job
calls the same code as the bytewax processor — `PollDecoder` (routing, validation, `prior_max`),
`GroupEngine` (filter, key, lateness, kernels) and `OutputWriter` (online upserts, `FeatureUpdate`
events, dead letters) — through `processors.flink.steps`, which holds no Flink code either.
"""
