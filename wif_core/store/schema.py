"""The store's schema. Bump SCHEMA_VERSION on any change; stores of another version are refused."""

SCHEMA_VERSION = 1

DDL = [
    "CREATE TABLE wif_meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    """CREATE TABLE runs (
        run_id VARCHAR PRIMARY KEY,
        model VARCHAR NOT NULL,
        task VARCHAR NOT NULL,
        source VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,            -- 'collected' (wif scored it) or 'imported' (outcomes only)
        template VARCHAR,
        scoring VARCHAR,
        layers INTEGER[],
        sites VARCHAR[],
        token_layers INTEGER[],           -- layers with per-token activations of the listing prompt
        n_layers INTEGER,
        d_model INTEGER,
        act_dtype VARCHAR,
        seed INTEGER,
        split_config JSON,
        config JSON,
        status VARCHAR NOT NULL,          -- 'collecting' until every item has an outcome, then 'complete'
        n_planned INTEGER NOT NULL,
        created TIMESTAMP DEFAULT current_timestamp
    )""",
    """CREATE TABLE items (
        run_id VARCHAR NOT NULL,
        item_id VARCHAR NOT NULL,
        position INTEGER NOT NULL,
        context VARCHAR NOT NULL,
        choices VARCHAR[] NOT NULL,
        gold INTEGER NOT NULL,
        meta JSON,
        key VARCHAR NOT NULL,             -- normalised-content hash (tasks.base.item_key)
        PRIMARY KEY (run_id, item_id)
    )""",
    """CREATE TABLE outcomes (
        run_id VARCHAR NOT NULL,
        item_id VARCHAR NOT NULL,
        pred INTEGER,
        correct BOOLEAN NOT NULL,
        margin DOUBLE,
        ll_sum DOUBLE[],
        ll_norm DOUBLE[],
        n_tokens INTEGER[],
        PRIMARY KEY (run_id, item_id)
    )""",
    """CREATE TABLE activations (
        run_id VARCHAR NOT NULL,
        item_id VARCHAR NOT NULL,
        layer INTEGER NOT NULL,           -- 1-based block index: the residual stream after block L
        site VARCHAR NOT NULL,            -- 'choice' ([k, d], option order), 'last' or 'mean' ([d])
        vec BLOB NOT NULL,                -- little-endian array of runs.act_dtype
        PRIMARY KEY (run_id, item_id, layer, site)
    )""",
    """CREATE TABLE token_activations (
        run_id VARCHAR NOT NULL,
        item_id VARCHAR NOT NULL,
        layer INTEGER NOT NULL,
        n_tokens INTEGER NOT NULL,
        vec BLOB NOT NULL,                -- [n_tokens, d] of runs.act_dtype: the listing prompt's tokens
        PRIMARY KEY (run_id, item_id, layer)
    )""",
    """CREATE TABLE tokens (
        run_id VARCHAR NOT NULL,
        item_id VARCHAR NOT NULL,
        seq VARCHAR NOT NULL,             -- 'listing' or 'choice<j>'
        tokens VARCHAR[] NOT NULL,
        ids INTEGER[] NOT NULL,
        cont_start INTEGER NOT NULL,
        PRIMARY KEY (run_id, item_id, seq)
    )""",
    """CREATE TABLE splits (
        run_id VARCHAR NOT NULL,
        item_id VARCHAR NOT NULL,
        split VARCHAR NOT NULL,           -- 'train', 'val', 'test'
        excluded BOOLEAN NOT NULL,        -- left out of evaluation (leakage)
        reason VARCHAR,
        PRIMARY KEY (run_id, item_id)
    )""",
    """CREATE TABLE findings (
        run_id VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,            -- 'cross_split', 'both_outcomes', 'repeat'
        key VARCHAR NOT NULL,
        item_ids VARCHAR[] NOT NULL,
        detail VARCHAR
    )""",
]
