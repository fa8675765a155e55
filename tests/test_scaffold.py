"""``ahtwist new``: the files of a new app and its config."""

from ahtwist.config import bundled_path, load_config
from ahtwist.scaffold import main


def test_new_app_layout_and_config(tmp_path, capsys):
    app = tmp_path / "shop"
    assert main(["new", str(app)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"created {app}"
    assert sorted(str(p.relative_to(app)) for p in app.rglob("*") if p.is_file()) == [
        "actions/hello.py", "actions/notes.py", "ahtwist.toml", "initializers/notes.py",
        "public/index.html", "systemd/shop.service", "tests/conftest.py", "tests/test_app.py", "webhooks.py",
    ]
    config = load_config(app / "ahtwist.toml", environ={})
    assert config.warnings == ()
    assert config.general.serverName == "shop"
    assert config.general.paths.actions == (str(app / "actions"),)
    assert config.general.paths.initializers == (str(app / "initializers"),)
    assert config.general.paths.public == (str(app / "public"), str(bundled_path("public")))
    assert [(m.path, m.app) for m in config.servers.web.mounts] == [("/hooks", f"{app / 'webhooks.py'}:app")]
    assert len(config.general.serverToken) == 32 and config.general.serverToken != "change-me"


def test_new_refuses_a_non_empty_directory(tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    assert main(["new", str(tmp_path / "taken")]) == 1
    assert capsys.readouterr().err == f"ahtwist: {tmp_path / 'taken'} is not empty\n"


def test_readme_testing_example_runs_against_a_new_app(tmp_path, monkeypatch):
    import re

    from tests.helpers import REPO

    text = (REPO / "README.md").read_text("utf-8")
    section = text[text.index("## Testing your actions") : text.index("## The HTTP API")]
    [block] = re.findall(r"```python\n(.*?)```", section, re.S)
    main(["new", str(tmp_path / "app")])
    monkeypatch.chdir(tmp_path / "app")
    monkeypatch.setenv("NOTES_FILE", str(tmp_path / "notes.txt"))
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    namespace["test_hello"]()
    assert (tmp_path / "notes.txt").exists()  # the app's initializer ran
