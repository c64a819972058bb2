"""cluster.yaml is a valid Ray autoscaler config (checked with the schema that ships with Ray)."""

from pathlib import Path

import yaml


def test_cluster_yaml_validates_against_ray_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "cluster.yaml").read_text())
    validate_config(prepare_config(config))  # as `ray up` does: provider defaults filled in, then the schema
    gpu = config["available_node_types"]["gpu_worker"]
    assert gpu["max_workers"] >= 1 and config["available_node_types"]["head"]["resources"] == {"CPU": 0}
