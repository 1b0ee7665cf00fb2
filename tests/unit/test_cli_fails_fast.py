"""A command given a project file it cannot read fails before MLflow, LightGBM, scikit-learn, SHAP or BentoML
load: ~0.8 s instead of ~2.9 s of imports for a mistyped ``-c`` path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

COMMANDS = [
    ["validate"],
    ["features", "build", "--out", "{tmp}/set.parquet"],
    ["train"],
    ["train", "--target", "time-to-close"],
    ["evaluate"],
    ["forecast"],
    ["rescore", "--db", "sqlite:///{tmp}/scores.db"],
    ["models", "promote"],
    ["models", "rollback"],
    ["models", "export", "--out", "{tmp}/exported"],
    ["models", "list"],
]


def test_a_missing_project_file_fails_before_the_heavy_libraries_load(tmp_path) -> None:
    script = textwrap.dedent("""
        import json, sys
        from leadscore.cli import app

        HEAVY = ("mlflow", "lightgbm", "sklearn", "shap", "bentoml")
        seen = []
        for command in json.loads(sys.argv[1]):
            try:
                app(command, standalone_mode=True)
                code = 0
            except SystemExit as exc:
                code = exc.code
            seen.append([command, code, [m for m in HEAVY if m in sys.modules]])
        print(json.dumps(seen))
    """)
    missing = str(tmp_path / "nowhere" / "leadscore.yaml")
    commands = [[part.format(tmp=tmp_path) for part in command] + ["-c", missing] for command in COMMANDS]
    # without the tracking variables another test of this worker may have set: with a tracking URI the models
    # commands rightly do not need the project file (it would then reach the store of that test)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "LEADSCORE_"))}
    done = subprocess.run([sys.executable, "-c", script, json.dumps(commands)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(results) == len(COMMANDS)
    for command, code, heavy in results:
        assert code == 2, (command, code, done.stderr[-2000:])
        assert heavy == [], f"{' '.join(command)} loaded {heavy} before refusing its project file"
    assert done.stderr.count("project file not found") == len(COMMANDS), done.stderr[-3000:]


def test_serve_checks_its_settings_and_port_before_the_heavy_libraries_load(tmp_path) -> None:
    """`leadscore serve` validates the serving settings, its folders and its port, then becomes `bentoml serve`
    (which imports what scoring needs): none of that loads the scoring libraries into the process it replaces."""
    script = textwrap.dedent("""
        import json, socket, sys
        from leadscore.cli import app

        HEAVY = ("mlflow", "lightgbm", "sklearn", "shap", "bentoml")
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        seen = []
        for args in json.loads(sys.argv[1]):
            try:
                app(["serve", "--model-dir", sys.argv[2], *args, "--port", port], standalone_mode=True)
                code = 0
            except SystemExit as exc:
                code = exc.code
            seen.append([args, code, [m for m in HEAVY if m in sys.modules]])
        print(json.dumps(seen))
    """)
    cases = [["--reload-seconds", "5"],  # every setting valid: refused for the busy port only
             ["--request-timeout", "5"]]  # a setting the settings' own rules refuse
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "LEADSCORE_"))}
    done = subprocess.run([sys.executable, "-c", script, json.dumps(cases), str(tmp_path)], capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert [code for _, code, _ in results] == [1, 2], (results, done.stderr[-2000:])
    assert "is in use" in done.stderr and "--request-timeout 5" in done.stderr, done.stderr[-3000:]
    for args, _, heavy in results:
        assert heavy == [], f"serve {' '.join(args)} loaded {heavy} before it would become bentoml serve"
