"""Where collection runs: in this process (``wif_core.runner.collect``), as shard directories of Parquet files
that any job can write and ``ingest`` merges into the store (``shards``), or on a Ray cluster (``ray_engine``)."""
