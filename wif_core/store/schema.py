"""The store's schema. Bump SCHEMA_VERSION on any change and add the step to MIGRATIONS.

Older stores are upgraded in place by ``wif migrate`` (or any command that opens them for
writing); the app, which opens stores read-only, asks for that instead of guessing.
"""

from wif_core.tasks.base import TASKS

SCHEMA_VERSION = 6

_V2 = [
    """CREATE TABLE attributions (
        run_id VARCHAR NOT NULL,
        item_id VARCHAR NOT NULL,
        method VARCHAR NOT NULL,          -- 'grad_x_input', 'integrated_gradients', 'occlusion', 'attnlrp'
        wrong_choice INTEGER NOT NULL,    -- the choice pushed toward: the model's wrong pick, or the best wrong one
        right_choice INTEGER NOT NULL,    -- the gold choice
        tokens VARCHAR[] NOT NULL,
        segments VARCHAR[] NOT NULL,      -- per token: 'context', 'question', 'choice<j>', 'wrong', 'right', 'template', ...
        scores DOUBLE[] NOT NULL,         -- relevance per token; positive pushes toward wrong_choice
        delta DOUBLE NOT NULL,            -- log p(wrong | context) - log p(right | context)
        sum_scores DOUBLE NOT NULL,
        layer_profile DOUBLE[],           -- relevance at the final context position after each block
        deletion JSON,                    -- deletion curves: {"k": [...], "top": [...], "random": [...]}
        faithfulness DOUBLE,              -- area between the random and the top-first deletion curves
        seconds DOUBLE,
        config JSON,
        PRIMARY KEY (run_id, item_id, method)
    )""",
]

# What a run is, on the run record (no reader looks it up by task name); a v2 store's runs are filled in from
# the static task table, from zoo task names (``zoo-<task>-n<n>``; longest_cycle answers a class, the others a
# position; a zoo run's config says kind 'zoo'), and otherwise from the items' number of choices. The columns
# stay nullable (DuckDB adds no NOT NULL column in place); every write sets them. IF NOT EXISTS and the
# ``IS NULL`` guards make the step safe to run twice.
_NAMED = ", ".join(f"('{t.name}', {t.n_choices}, '{t.format}')" for t in TASKS.values())
_ZOO_NAME = "'^zoo-(.+)-n([0-9]+)$'"
_V3 = [
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS n_choices INTEGER",  # the number of choices of every item
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS family VARCHAR",  # RunInfo.family: a task format or 'zoo-*'
    f"""UPDATE runs SET n_choices = t.n_choices, family = t.family
        FROM (VALUES {_NAMED}) t(task, n_choices, family)
        WHERE runs.task = t.task AND runs.n_choices IS NULL""",  # noqa: S608 - the values are wif's own constants
    f"""UPDATE runs SET kind = 'zoo',
            n_choices = CAST(regexp_extract(task, {_ZOO_NAME}, 2) AS INTEGER),
            family = CASE regexp_extract(task, {_ZOO_NAME}, 1) WHEN 'longest_cycle' THEN 'zoo-class'
                     ELSE 'zoo-position' END
        WHERE n_choices IS NULL AND regexp_matches(task, {_ZOO_NAME})
          AND (json_extract_string(config, '$.kind') = 'zoo' OR model LIKE 'zoo:%')""",  # noqa: S608 - fixed strings
    """UPDATE runs SET family = 'unknown',
            n_choices = coalesce((SELECT max(len(i.choices)) FROM items i WHERE i.run_id = runs.run_id), 0)
        WHERE n_choices IS NULL""",
]

# How many context tokens an outcome's item lost to fit the model (0: none; NULL: outcomes that were not scored
# by wif, and those of stores older than version 4, which cut nothing).
_V4 = ["ALTER TABLE outcomes ADD COLUMN IF NOT EXISTS truncated INTEGER"]

# The item-quality pass (wif_core.label_quality): one row per run that had one, saying what it used, and one row per
# item it flagged as a suspect label, with the evidence. Tables of their own, not ``findings`` rows: a split
# rewrite replaces a run's findings, and a quality pass does not depend on the splits.
_V5 = [
    """CREATE TABLE IF NOT EXISTS quality_passes (
        run_id VARCHAR PRIMARY KEY,
        n_items INTEGER NOT NULL,         -- the run's items the pass looked at
        n_flagged INTEGER NOT NULL,
        signals VARCHAR[] NOT NULL,       -- the signals used: 'duplicates', 'consensus', 'text', 'scores'
        config JSON NOT NULL,             -- settings, seed, signals skipped and why, runs read, thresholds
        created TIMESTAMP DEFAULT current_timestamp
    )""",
    """CREATE TABLE IF NOT EXISTS quality_flags (
        run_id VARCHAR NOT NULL,
        item_id VARCHAR NOT NULL,
        key VARCHAR NOT NULL,             -- the item's normalised-content hash (items.key)
        reasons VARCHAR[] NOT NULL,       -- 'gold_conflict', 'consensus', 'confident_learning'
        score DOUBLE NOT NULL,            -- how suspect: 1 - P(the given answer is right), 1 without probabilities
        suggested INTEGER,                -- the choice the evidence favours, when one does
        evidence JSON NOT NULL,           -- which runs chose what, out-of-fold probabilities, the copies
        PRIMARY KEY (run_id, item_id)
    )""",
]

# The shards of a run merged into the store (``wif ingest``, the Ray engine; wif_core.engines.shards): one row per
# shard, written in the transaction that merges its rows, so that no shard is ever merged twice.
_V6 = [
    """CREATE TABLE IF NOT EXISTS shards (
        run_id VARCHAR NOT NULL,
        shard INTEGER NOT NULL,           -- 0-based index of the shard
        n_shards INTEGER NOT NULL,        -- how many shards the run was split into
        n_items INTEGER NOT NULL,         -- the items whose outcomes the shard carried
        source VARCHAR NOT NULL,          -- the shard directory it was merged from
        merged TIMESTAMP DEFAULT current_timestamp,
        PRIMARY KEY (run_id, shard)
    )""",
]

# Steps from version v to v + 1; each is additive, so older data stays valid.
MIGRATIONS: dict[int, list[str]] = {1: _V2, 2: _V3, 3: _V4, 4: _V5, 5: _V6}

DDL = [
    "CREATE TABLE wif_meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    """CREATE TABLE runs (
        run_id VARCHAR PRIMARY KEY,
        model VARCHAR NOT NULL,
        task VARCHAR NOT NULL,
        source VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,            -- 'collected' (wif scored an LM), 'imported' (outcomes only), 'zoo'
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
        kind VARCHAR NOT NULL,            -- 'gold_conflict', 'cross_split', 'both_outcomes', 'repeat'
        key VARCHAR NOT NULL,
        item_ids VARCHAR[] NOT NULL,
        detail VARCHAR
    )""",
    *_V2,
    *_V3,
    *_V4,
    *_V5,
    *_V6,
]
