"""Catalog and clean a collection on a Ray cluster.

    ray job submit --working-dir . -- python jobs/clean_data.py --data s3://bucket/images --workdir s3://bucket/run
    python jobs/clean_data.py --smoke-test --workdir runs/smoke     # bundled demo data, random CLIP weights
"""

import argparse

import _common  # noqa: F401  (puts the repo root on sys.path)

from speciesfam.config import CatalogConfig, CleanConfig
from speciesfam.data.catalog import run_catalog
from speciesfam.data.clean import run_clean
from speciesfam.demo import demo_images

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--data", help="folder per family or a CSV/Parquet manifest (default with --smoke-test: demo data)")
parser.add_argument("--workdir", required=True)
parser.add_argument("--model", default="ViT-B-32")
parser.add_argument("--pretrained", default="laion2b_s34b_b79k", help="open_clip tag, local file, or 'none'")
parser.add_argument("--detector", default="isolation_forest")
parser.add_argument("--contamination", type=float, default=0.05)
parser.add_argument("--zero-shot", action="store_true", help="also remove what CLIP calls a map, drawing, text...")
parser.add_argument("--batch-size", type=int, default=32)
parser.add_argument("--group-split", action="store_true", help="keep each manifest 'group' (species) in one split")
parser.add_argument("--smoke-test", action="store_true", help="demo data, ViT-S-32 with random weights")
args = parser.parse_args()
if not args.data and not args.smoke_test:
    parser.error("--data is required (or --smoke-test for the bundled demo data)")
if args.smoke_test:
    args.data, args.model, args.pretrained = args.data or demo_images(), "ViT-S-32", "none"
run_catalog(args.data, args.workdir, CatalogConfig(group_split=args.group_split))
run_clean(args.workdir, CleanConfig(model=args.model, pretrained=None if args.pretrained == "none" else args.pretrained,
                                    detector=args.detector, contamination=args.contamination,
                                    zero_shot=args.zero_shot, batch_size=args.batch_size))
