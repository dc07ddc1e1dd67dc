"""`make bench`: every benchmark, each writing its section of docs/BENCHMARKS.md."""

from __future__ import annotations

import json

from bench import collection


def main() -> None:
    print(json.dumps({"collection": collection.main()}, indent=1, default=str))


if __name__ == "__main__":
    main()
