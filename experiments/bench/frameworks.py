"""The comparisons: the lesson's Keras program, and PyTorch with a dense ``nn.Linear`` or an
``nn.EmbeddingBag(sum)`` first layer. Each is imported only inside its own case process."""

from __future__ import annotations

import os
import time

import numpy as np

from bench.options import Settings
from bench.probe import EpochTimer, load_sparse, peak_rss_mib


def lesson_vectorize(sequences, dimension: int) -> np.ndarray:
    """The lesson's ``vectorize_sequences``, float64 as written there."""
    out = np.zeros((len(sequences), dimension))
    for i, sequence in enumerate(sequences):
        out[i, sequence] = 1.0
    return out


def run_keras_case(s: Settings, dtype: str, epochs: int) -> dict:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    if dtype == "float64":
        from jaxlab.imdb import load_imdb

        (x_train, y_train), (x_test, y_test) = load_imdb(s.num_words, s.data_dir)
        if s.limit is not None:
            rows = [np.arange(min(s.limit, len(x))) for x in (x_train, x_test)]
            x_train, y_train = x_train.take(rows[0]), y_train[rows[0]]
            x_test, y_test = x_test.take(rows[1]), y_test[rows[1]]
        x_train = lesson_vectorize(x_train, s.num_words)
        x_test = lesson_vectorize(x_test, s.num_words)
        y_train, y_test = (
            np.asarray(y_train).astype("float32"),
            np.asarray(y_test).astype("float32"),
        )
    else:
        (train, train_labels), (test, test_labels) = load_sparse(s)
        x_train, y_train, x_test, y_test = (
            train.to_dense(),
            train_labels,
            test.to_dense(),
            test_labels,
        )
    rss_data = peak_rss_mib()
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(shape=(s.num_words,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["accuracy"])
    timer = EpochTimer()
    callback = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: timer.begin(),
        on_epoch_end=lambda epoch, logs: timer.end(),  # after validation
    )
    start = time.perf_counter()
    history = model.fit(
        x_train,
        y_train,
        epochs=s.warmup_epochs + epochs,
        batch_size=s.batch_size,
        validation_data=(x_test, y_test),
        callbacks=[callback],
        verbose=0,
    )
    return {
        "epoch_seconds": timer.seconds,
        "fit_seconds": time.perf_counter() - start,
        "val_accuracy": float(history.history["val_accuracy"][-1]),
        "rss_after_data_mib": rss_data,
        "input_dtype": str(x_train.dtype),
        "backend": keras.backend.backend(),
    }


def run_torch_case(s: Settings, bag: bool, epochs: int) -> dict:
    import torch
    from torch import nn
    from torch.nn import functional

    torch.set_num_threads(s.torch_threads)
    torch.manual_seed(0)
    (train, train_labels), (test, test_labels) = load_sparse(s)
    if bag:  # each review's unique word indices, and where each review starts

        def inputs_of(data, rows):
            taken = data.take(rows)
            return torch.from_numpy(taken.indices.astype(np.int64)), torch.from_numpy(
                taken.offsets[:-1].astype(np.int64)
            )

        sources = {"train": train, "test": test}
    else:
        dense = {
            "train": torch.from_numpy(train.to_dense()),
            "test": torch.from_numpy(test.to_dense()),
        }

        def inputs_of(data, rows):
            return data.index_select(0, torch.from_numpy(rows))

        sources = dense
    labels = {"train": torch.from_numpy(train_labels), "test": torch.from_numpy(test_labels)}
    rss_data = peak_rss_mib()

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            if bag:
                self.first = nn.EmbeddingBag(s.num_words, 16, mode="sum")
                self.first_bias = nn.Parameter(torch.zeros(16))
            else:
                self.first = nn.Linear(s.num_words, 16)
            self.hidden = nn.Linear(16, 16)
            self.output = nn.Linear(16, 1)
            for module in self.modules():  # Keras's glorot_uniform kernels, zero biases
                if isinstance(module, nn.Linear | nn.EmbeddingBag):
                    nn.init.xavier_uniform_(module.weight)
                if isinstance(module, nn.Linear):
                    nn.init.zeros_(module.bias)

        def forward(self, inputs):
            x = self.first(*inputs) + self.first_bias if bag else self.first(inputs)
            x = torch.relu(self.hidden(torch.relu(x)))
            return self.output(x)[:, 0]

    net = Net()
    optimizer = torch.optim.RMSprop(net.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
    rng = np.random.default_rng(0)
    n_train, n_test = len(train_labels), len(test_labels)
    timer = EpochTimer()
    val_loss = val_accuracy = float("nan")
    for _ in range(s.warmup_epochs + epochs):
        timer.begin()
        order = rng.permutation(n_train)
        net.train()
        for start in range(0, n_train, s.batch_size):
            rows = order[start : start + s.batch_size]
            y = labels["train"][torch.from_numpy(rows)]
            optimizer.zero_grad(set_to_none=True)
            logits = net(inputs_of(sources["train"], rows))
            loss = functional.binary_cross_entropy_with_logits(logits, y)
            loss.backward()
            optimizer.step()
        net.eval()
        val_loss, correct = 0.0, 0.0
        with torch.no_grad():
            for start in range(0, n_test, s.batch_size):
                rows = np.arange(start, min(start + s.batch_size, n_test))
                logits = net(inputs_of(sources["test"], rows))
                y = labels["test"][torch.from_numpy(rows)]
                loss = functional.binary_cross_entropy_with_logits(logits, y, reduction="sum")
                val_loss += float(loss)
                correct += float(((logits > 0) == (y > 0.5)).sum())
        val_accuracy = correct / n_test
        timer.end()
    return {
        "epoch_seconds": timer.seconds,
        "val_loss": val_loss / n_test,
        "val_accuracy": val_accuracy,
        "rss_after_data_mib": rss_data,
        "threads": torch.get_num_threads(),
    }
