"""A user's mistake in the data (a missing file, columns not found, a label that does not fit, a bad
COLUMNS spec, ...) ends a command with one line on stderr and exit status 2, never a traceback.
Every case fails at data loading, before any model loads."""
from __future__ import annotations

import subprocess
import sys

import pytest

from shoprank.cli import main
from shoprank.model_card import write_model_card

CLICKS = "query:search_query,text:item_name,label:clicked"


@pytest.fixture
def files(tmp_path):
    (tmp_path / "log.csv").write_text("search_query,item_name,clicked\ndrill,DEWALT drill,1\ndrill,paint,yes\n")
    (tmp_path / "empty.csv").write_text("")
    return tmp_path


@pytest.mark.parametrize("args, says", [
    (["--data", "missing.csv"], "data file missing.csv not found"),
    (["--data", "log.csv"], 'no mapping fits its columns (ready: homedepot, esci, wands, clicks); '
                            "the file's columns: search_query, item_name, clicked; "
                            f'name yours with COLUMNS="{CLICKS}"'),
    (["--data", "log.csv", "--columns", CLICKS], "log.csv: line 3: clicked='yes' does not fit COLUMNS"),
    (["--data", "log.csv", "--columns", "query:search_query,text:item_name,label:clicked,kind:graded:3"],
     "kind:graded:3 needs a range"),
])
def test_finetune_answers_a_data_mistake_in_one_line(files, args, says):
    run = subprocess.run([sys.executable, "-m", "shoprank.cli", "finetune", *args, "--out-dir", str(files / "out")],
                         cwd=files, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr[-2000:]
    assert "Traceback" not in run.stderr and run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("shoprank finetune: ") and says in lines[0], run.stderr
    assert not (files / "out").exists()


def test_finetune_in_process_answers_an_empty_file(files, capsys, monkeypatch):
    monkeypatch.chdir(files)
    assert main(["finetune", "--data", "empty.csv", "--out-dir", str(files / "out")]) == 2
    assert capsys.readouterr().err == "shoprank finetune: empty.csv: the file is empty\n"


def test_eval_answers_a_bad_columns_spec_and_a_moved_data_file(tmp_path, capsys):
    model = tmp_path / "model"
    model.mkdir()
    write_model_card(model, data=str(tmp_path / "gone.csv"), mapping=CLICKS, seed=7)
    assert main(["eval", "--model", str(model)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("shoprank eval: data file") and "gone.csv not found" in err[0]
    (tmp_path / "gone.csv").write_text("search_query,item_name,clicked\na,b,1\n")
    assert main(["eval", "--model", str(model), "--columns", "query:search_query,text"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad COLUMNS 'query:search_query,text': part 'text' is not key:value" in err[0]


def test_finetune_in_process_answers_a_file_too_small_to_split(files, capsys, monkeypatch):
    monkeypatch.chdir(files)
    (files / "tiny.csv").write_text("search_query,item_name,clicked\ndrill,DEWALT drill,1\ndrill,paint,0\n")
    assert main(["finetune", "--data", "tiny.csv", "--columns", CLICKS, "--out-dir", str(files / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fine-tuning needs both" in err[0] and "add queries" in err[0], err
    assert not (files / "out").exists()
