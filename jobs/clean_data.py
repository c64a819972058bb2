"""Catalog and clean a collection on a Ray cluster (flags as `speciesfam catalog --help` and `speciesfam clean --help`).

    ray job submit --working-dir . -- python jobs/clean_data.py --data s3://bucket/images --workdir s3://bucket/run
    python jobs/clean_data.py --smoke-test --workdir runs/smoke     # bundled demo data, random CLIP weights
"""

import os
import sys

import _common  # noqa: F401  (puts the repo root on sys.path)

from speciesfam import cli, cluster_watch
from speciesfam.config import CatalogConfig, CleanConfig
from speciesfam.data.embedders import fetch_pretrained
from speciesfam.errors import SpeciesfamError
from speciesfam.flags import OneLineParser, add_config_flags, config_from_args

argv = cli.take_verbose(sys.argv[1:])
OneLineParser.shown_as = "clean_data.py"  # its lines name this script, not `speciesfam catalog` (hostile tester)
parser = OneLineParser(description=__doc__.splitlines()[0])
parser.add_argument("--data", help="folder per family or a CSV/Parquet manifest (default with --smoke-test: demo data)")
parser.add_argument("--workdir", required=True, help="run folder (local path, NFS, s3:// or gs://)")
parser.add_argument("--smoke-test", action="store_true", help="demo data, CleanConfig.smoke() (small CLIP, random weights)")
parser.add_argument("--verbose", action="store_true", help="the frameworks' own output on the console")
parser.add_argument("--address", default=None, help="Ray cluster address (default RAY_ADDRESS or a local Ray)")
add_config_flags(parser, CatalogConfig, title="catalog")
add_config_flags(parser, CleanConfig, title="clean")
args = parser.parse_args(argv)
if not args.data and not args.smoke_test:
    parser.error("--data is required (or --smoke-test for the bundled demo data)")
if not args.data:
    from speciesfam.demo import demo_images

    args.data = demo_images()
args.source = args.data
try:  # both stages' flags, clean's weights and the cluster, before the catalog pass (else found after it)
    config_from_args(CatalogConfig, args)
    fetch_pretrained(cli.clean_config(args))
    cli.use_address(args.address)
    if os.environ.get("RAY_ADDRESS") and not args.address:
        from speciesfam.raycluster import check_reachable

        check_reachable(os.environ["RAY_ADDRESS"], "RAY_ADDRESS")
except SpeciesfamError as err:
    print(f"{parser.prog}: error: {err}", file=sys.stderr)
    sys.exit(2)
for args.command in ("catalog", "clean"):  # as `speciesfam catalog` then `speciesfam clean`: logs, summary, report
    cluster_watch.ARMED.set()  # a gone cluster: said, and the job ends (as `speciesfam` commands)
    status = cli.run(args)
    if status:
        sys.exit(status)
