"""A result that cannot be written (a full disk, a file size limit, a name taken by a
folder) ends `maspo eval`, `compare` and `probe` in one sentence and exit code 2, after the
work is done and without losing it: eval has printed its scores, and a rerun of compare
or probe writes its files without training or probing again."""

from __future__ import annotations

import json
import resource
from contextlib import contextmanager

from maspo.cli import main
from maspo.testing import tiny_overrides


@contextmanager
def file_size_limit(limit: int):
    """Writes past ``limit`` bytes fail with EFBIG ("File too large") in this process
    (Python ignores SIGXFSZ), as on a disk that fills while results are written."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_eval_that_cannot_write_prints_its_scores_and_one_sentence(tiny_model_dir, tmp_path,
                                                                   capsys):
    out = tmp_path / "res"
    with file_size_limit(64):  # the model loads (reads); the results do not fit
        code = main(["eval", str(tiny_model_dir), "--data", "arithmetic", "--n", "2",
                     "--test-size", "3", "--max-new-tokens", "4", "--out", str(out),
                     "--no-progress"])
    captured = capsys.readouterr()
    assert code == 2
    assert "avg@2" in captured.out  # the scores were printed before the write failed
    [line] = [x for x in captured.err.splitlines() if x.strip()]
    assert line.startswith(f"maspo: error: could not write the evaluation to {str(out)!r} (File "
                           "too large); the scores are printed above")
    assert "Traceback" not in captured.err


def test_compare_results_that_cannot_be_written_are_written_by_a_rerun(tiny_model_dir,
                                                                       tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "--objectives", "grpo", "--seeds", "0", "--out", str(out), "--n", "2",
            "--no-progress", *tiny_overrides(tiny_model_dir)]
    (out / "results.md").mkdir(parents=True)  # the table's name is taken by a folder
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"could not write the results to {str(out)!r} (Is a directory); free some " \
        "space and run the same command again (finished runs are not trained again)" in err
    final = (out / "runs" / "grpo" / "seed-0" / "final_eval.json").read_text()
    (out / "results.md").rmdir()
    assert main(argv) == 0
    assert "grpo seed 0: done" in capsys.readouterr().out  # not trained again
    assert (out / "runs" / "grpo" / "seed-0" / "final_eval.json").read_text() == final
    assert json.loads((out / "results.json").read_text())["runs"][0]["avg@2"] is not None


def test_probes_that_cannot_be_written_keep_their_seeds(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "probes"
    argv = ["probe", "--objectives", "grpo,maspo", "--seeds", "0", "--out", str(out),
            "--entropy-steps", "0", *tiny_overrides(tiny_model_dir, **{
                "optim.updates_per_step": 2, "rollout.prompts_per_step": 2})]
    (out / "probes.md").mkdir(parents=True)
    assert main(argv) == 2
    assert f"could not write the probes to {str(out)!r} (Is a directory)" in \
        capsys.readouterr().err
    assert (out / "seeds" / "seed-0.json").is_file()
    (out / "probes.md").rmdir()
    assert main(argv) == 0
    assert "seed 0: probed before" in capsys.readouterr().out
    assert (out / "probes.md").read_text().startswith("# Mechanism probes")


def test_a_new_run_whose_config_cannot_be_written_leaves_no_folder(tiny_model_dir, tmp_path,
                                                                   capsys):
    run = tmp_path / "new" / "run"  # neither folder exists yet
    with file_size_limit(64):  # the config does not fit
        code = main(["train", "--no-progress", *tiny_overrides(tiny_model_dir, run)])
    assert code == 2
    err = capsys.readouterr().err
    assert f"could not write the run folder {str(run)!r} (File too large)" in err
    assert not (tmp_path / "new").exists()  # nothing left that looks like a started run
