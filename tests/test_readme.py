"""The README's code is run, so it cannot drift from the library."""

import re

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO
from test_experiments import run_script

from jaxlab.optim import OPTIMIZERS, make_optimizer


def readme_block(after_heading: str) -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index(after_heading) :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def readme_optimizer_file(tmp_path):
    code = readme_block("### Adding an optimizer")
    path = tmp_path / "my_optimizer.py"
    path.write_text(code)
    yield path
    if "sgd_clipped" in OPTIMIZERS:
        OPTIMIZERS.unregister("sgd_clipped")


def test_readme_optimizer_example_registers_a_working_optimizer(readme_optimizer_file):
    namespace = {}
    exec(compile(readme_optimizer_file.read_text(), "README", "exec"), namespace)
    optimizer = make_optimizer("sgd_clipped", learning_rate=0.1)
    params = {"w": jnp.float32(3.0)}
    updates, _ = optimizer.update({"w": jnp.float32(10.0)}, optimizer.init(params), params)
    assert float(updates["w"]) == pytest.approx(-0.1)  # the gradient 10 is clipped to norm 1


@pytest.mark.imdb
def test_readme_command_line_import_trains_with_the_user_optimizer(
    readme_optimizer_file, imdb_dir, imdb_cache, tmp_path
):
    result = run_script(
        "imdb_baseline.py",
        *("--import", str(readme_optimizer_file), "--optimizer", "sgd_clipped"),
        *("--epochs", "1", "--train-size", "500", "--quiet"),
        *("--data-dir", str(imdb_dir), "--out", str(tmp_path / "out")),
        env_extra={"JAXLAB_CACHE_DIR": str(imdb_cache)},
    )
    assert result.returncode == 0, result.stderr
    assert '"optimizer": "sgd_clipped"' in next((tmp_path / "out").glob("*/run.json")).read_text()


@pytest.mark.imdb
def test_readme_scaling_example_standardizes_with_training_statistics(
    imdb_dir, imdb_cache, monkeypatch
):
    import numpy as np

    monkeypatch.setenv("TFDS_DATA_DIR", str(imdb_dir))
    monkeypatch.setenv("JAXLAB_CACHE_DIR", str(imdb_cache))
    namespace = {}
    code = readme_block("Word counts and scaled features stay sparse too")
    exec(compile(code, "README", "exec"), namespace)
    x, x_test = namespace["x"], namespace["x_test"]
    assert x.shape == x_test.shape == (25000, 10000)
    column_means = np.bincount(x.indices, x.values, minlength=x.dim) / len(x) - x.shift
    np.testing.assert_allclose(column_means, 0.0, atol=1e-4)
    np.testing.assert_array_equal(x_test.shift, x.shift)  # the training split's statistics


def test_readme_extending_examples_run(monkeypatch):
    """The "A model" and "A loss" blocks, on small synthetic token data instead of IMDB."""
    import jaxlab

    rng = np.random.default_rng(0)

    def tiny_tokens(num_words=10000, maxlen=256, **_):
        def split(n):
            tokens = rng.integers(1, num_words, size=(n, 12)) * (rng.random((n, 12)) < 0.7)
            return tokens.astype(np.int32), (tokens[:, 0] % 2).astype(np.float32)

        return split(40), split(20)

    monkeypatch.setattr(jaxlab, "load_imdb_tokens", tiny_tokens)
    namespace = {}
    try:
        exec(readme_block("### A model").replace("epochs=10", "epochs=2"), namespace)
        exec(readme_block("### A loss"), namespace)
        result = namespace["result"]
        assert result.histories["val_loss"].shape == (2, 3, 2)
        assert np.isfinite(result.histories["loss"]).all()
        assert "smoothed_bce" in jaxlab.LOSSES
    finally:
        for registry, name in (
            (jaxlab.MODELS, "bag_of_embeddings"),
            (jaxlab.LOSSES, "smoothed_bce"),
        ):
            if name in registry:
                registry.unregister(name)
