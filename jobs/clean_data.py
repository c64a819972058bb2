"""Catalog and clean a collection on a Ray cluster (flags as `speciesfam catalog --help` and `speciesfam clean --help`).

    ray job submit --working-dir . -- python jobs/clean_data.py --data s3://bucket/images --workdir s3://bucket/run
    python jobs/clean_data.py --smoke-test --workdir runs/smoke     # bundled demo data, random CLIP weights
"""

import argparse
import sys

import _common  # noqa: F401  (puts the repo root on sys.path)

from speciesfam.config import CatalogConfig, CleanConfig
from speciesfam.errors import SpeciesfamError
from speciesfam.flags import add_config_flags, config_from_args

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--data", help="folder per family or a CSV/Parquet manifest (default with --smoke-test: demo data)")
parser.add_argument("--workdir", required=True, help="run folder (local path, NFS, s3:// or gs://)")
parser.add_argument("--smoke-test", action="store_true", help="demo data, CleanConfig.smoke() (small CLIP, random weights)")
add_config_flags(parser, CatalogConfig, title="catalog")
add_config_flags(parser, CleanConfig, title="clean")
args = parser.parse_args()
if not args.data and not args.smoke_test:
    parser.error("--data is required (or --smoke-test for the bundled demo data)")
try:
    from speciesfam.data.catalog import run_catalog
    from speciesfam.data.clean import run_clean
    from speciesfam.demo import demo_images

    catalog_cfg = config_from_args(CatalogConfig, args)
    clean_cfg = config_from_args(CleanConfig, args, CleanConfig.smoke() if args.smoke_test else None)
    run_catalog(args.data or demo_images(), args.workdir, catalog_cfg)
    run_clean(args.workdir, clean_cfg)
except SpeciesfamError as err:
    sys.exit(f"clean_data: error: {err}")
