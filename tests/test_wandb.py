"""`--wandb online` on a node: where the key comes from, and a missing or blank key refused in one line before
Ray starts (W&B offline runs: test_search.py and test_search_process.py)."""

import warnings

from speciesfam.config import TuneConfig


def test_wandb_online_with_a_key_in_the_environment_warns_where_it_goes(tmp_path, monkeypatch, capsys):
    """The warning went to RUN/logs/tune.log only; the console never said it (hostile tester)."""
    import socket

    from speciesfam.tune.tracking import callbacks

    key = "speciesfam-test-key-0123456789abcdef0123"
    monkeypatch.setenv("WANDB_API_KEY", key)
    with socket.create_server(("127.0.0.1", 0)) as server:  # a W&B server this node reaches
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.getsockname()[1]}")
        (cb,) = callbacks(TuneConfig(wandb="online"), "exp", str(tmp_path))
    assert cb.kwargs["mode"] == "online"
    out = capsys.readouterr().out
    assert out.startswith("tune: warning: W&B online with WANDB_API_KEY set: ") and "`wandb login`" in out, out
    assert key not in out


def test_wandb_online_that_cannot_reach_its_server_is_one_line_before_ray_starts(tmp_path, monkeypatch, capsys):
    """Unreachable, the search ended "ok" while W&B retried in the background and uploaded nothing (hostile
    tester)."""
    import socket

    from speciesfam import cli
    from speciesfam.data.synthetic_embeddings import make_embedding_run

    monkeypatch.setenv("WANDB_API_KEY", "speciesfam-test-key-0123456789abcdef0123")
    with socket.create_server(("127.0.0.1", 0)) as server:
        closed = server.getsockname()[1]  # nothing listens there once closed
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{closed}")
    make_embedding_run(str(tmp_path / "run"), rows=60, dim=4, families=3)
    assert cli.main(["tune", "probe", "--workdir", str(tmp_path / "run"), "--wandb", "online"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"speciesfam tune: error: --wandb online: W&B's server http://127.0.0.1:{closed} cannot be "
                          "reached from here (") and err.endswith("give --wandb offline and upload later with `wandb "
                                                                  "sync`, or set WANDB_BASE_URL to a server this node "
                                                                  "reaches") and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run" / "tune").exists()


def test_wandb_online_without_a_key_is_one_line_before_ray_starts(tmp_path, monkeypatch, capsys):
    """No key on the node: Ray's callback raised a traceback (exit 1) once the search had started."""
    from speciesfam import cli
    from speciesfam.data.synthetic_embeddings import make_embedding_run

    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_SETUP_API_KEY_HOOK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: not logged in
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    make_embedding_run(str(tmp_path / "run"), rows=60, dim=4, families=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cli.main(["tune", "probe", "--workdir", str(tmp_path / "run"), "--wandb", "online"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["speciesfam tune: error: --wandb online: no W&B API key on this node; run "
                                        "`wandb login` once here (or set WANDB_API_KEY), or give --wandb offline and "
                                        "upload later with `wandb sync`"], err
    assert not (tmp_path / "run" / "tune").exists() and not (tmp_path / "run" / "trials.csv").exists()
    monkeypatch.setenv("WANDB_API_KEY", " \n")  # a blank key is no key (Ray passed it on to W&B's login)
    assert cli.main(["tune", "probe", "--workdir", str(tmp_path / "run"), "--wandb", "online"]) == 2
    assert "WANDB_API_KEY is set but blank" in capsys.readouterr().err
