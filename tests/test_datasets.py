
import numpy as np
import pytest
import torch

from live_training_dashboard.datasets import (
    TensorBatches,
    build_dataset,
    load_mnist_idx,
    make_mnist_like,
    make_spiral,
    read_idx,
    train_val_split,
    write_idx,
)


def test_spiral_has_balanced_classes_and_is_deterministic():
    x, y = make_spiral(points_per_class=100, num_classes=4, noise=0.1, seed=3)
    assert x.shape == (400, 2) and x.dtype == torch.float32
    assert torch.bincount(y).tolist() == [100, 100, 100, 100]
    x2, _ = make_spiral(points_per_class=100, num_classes=4, noise=0.1, seed=3)
    x3, _ = make_spiral(points_per_class=100, num_classes=4, noise=0.1, seed=4)
    assert torch.equal(x, x2) and not torch.equal(x, x3)
    assert x.norm(dim=1).max() <= 1.0 + 1e-6  # radii run from 0 to 1


@pytest.mark.parametrize("kwargs", [{"points_per_class": 1}, {"num_classes": 1}, {"noise": -0.1}, {"noise": float("nan")}])
def test_spiral_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        make_spiral(**kwargs)


def test_mnist_like_images_are_deterministic_digits_in_unit_range():
    x, y = make_mnist_like(200, seed=1)
    assert x.shape == (200, 1, 28, 28) and y.shape == (200,)
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert set(y.tolist()) == set(range(10))
    # Ink sits mostly in the centre: the border ring is darker than the middle on average.
    assert x[:, :, 10:18, 10:18].mean() > 2 * x[:, :, :3, :].mean()
    x2, y2 = make_mnist_like(200, seed=1)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(x, make_mnist_like(200, seed=2)[0])


def test_mnist_like_classes_differ_from_each_other():
    x, y = make_mnist_like(1000, seed=0, noise=0.0)
    means = torch.stack([x[y == d].mean(0).flatten() for d in range(10)])
    distances = torch.cdist(means, means)
    off_diagonal = distances[~torch.eye(10, dtype=bool)]
    assert off_diagonal.min() > 1.0  # every pair of average digits is visibly different


@pytest.mark.parametrize("name", ["images.idx", "images.idx.gz"])
def test_idx_round_trip(tmp_path, name):
    images = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    path = write_idx(tmp_path / name, images)
    if name.endswith(".gz"):
        assert path.read_bytes()[:2] == b"\x1f\x8b"
    loaded = read_idx(path)
    assert loaded.dtype == np.uint8 and np.array_equal(loaded, images)


def test_idx_round_trip_of_other_dtypes(tmp_path):
    values = np.arange(12, dtype=np.int32).reshape(3, 4) - 5
    assert np.array_equal(read_idx(write_idx(tmp_path / "ints", values)), values)
    floats = np.linspace(-1, 1, 6, dtype=np.float32)
    assert np.array_equal(read_idx(write_idx(tmp_path / "floats", floats)), floats)


def test_idx_reader_rejects_broken_files(tmp_path):
    good = write_idx(tmp_path / "good", np.zeros((4, 28, 28), dtype=np.uint8))
    truncated = tmp_path / "truncated"
    truncated.write_bytes(good.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(truncated)
    junk = tmp_path / "junk"
    junk.write_bytes(b"PK\x03\x04 not an idx file")
    with pytest.raises(ValueError, match="magic"):
        read_idx(junk)
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "missing")


def test_load_mnist_idx_folder_with_gzip_and_raw_files(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, (30, 28, 28), dtype=np.uint8)
    labels = np.arange(30, dtype=np.uint8) % 10
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels)
    x, y = load_mnist_idx(tmp_path)
    assert x.shape == (30, 1, 28, 28) and x.dtype == torch.float32
    assert torch.allclose(x[:, 0], torch.from_numpy(images).float() / 255)
    assert y.tolist() == labels.tolist()
    dataset = build_dataset("mnist_idx", mnist_path=tmp_path, num_samples=0, seed=0)
    assert len(dataset.x_train) + len(dataset.x_val) == 30 and dataset.num_classes == 10


def test_load_mnist_idx_reports_missing_or_mismatched_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images"):
        load_mnist_idx(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((5, 28, 28), dtype=np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4, dtype=np.uint8))
    with pytest.raises(ValueError, match="disagree"):
        load_mnist_idx(tmp_path)


def test_split_is_seeded_disjoint_and_complete():
    x = torch.arange(100).float()[:, None]
    y = torch.arange(100)
    xt, yt, xv, yv = train_val_split(x, y, 0.2, seed=5)
    assert len(xv) == 20 and len(xt) == 80
    assert sorted(yt.tolist() + yv.tolist()) == list(range(100))
    assert torch.equal(yv, train_val_split(x, y, 0.2, seed=5)[3])
    assert not torch.equal(yv, train_val_split(x, y, 0.2, seed=6)[3])
    with pytest.raises(ValueError):
        train_val_split(x, y, 1.5)


def test_train_fraction_shrinks_only_the_training_split():
    full = build_dataset("spiral", num_samples=600, seed=0)
    small = build_dataset("spiral", num_samples=600, seed=0, train_fraction=0.1)
    assert len(small.x_train) == len(full.x_train) // 10
    assert torch.equal(small.x_val, full.x_val)


def test_unknown_dataset_name_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown dataset"):
        build_dataset("cifar")


def test_tensor_batches_cover_every_sample_once_per_epoch_and_reshuffle():
    x, y = torch.arange(10).float()[:, None], torch.arange(10)
    batches = TensorBatches(x, y, batch_size=4, seed=0)
    assert len(batches) == 3
    first = torch.cat([b for _, b in batches])
    second = torch.cat([b for _, b in batches])
    assert sorted(first.tolist()) == list(range(10)) and sorted(second.tolist()) == list(range(10))
    assert not torch.equal(first, second)
    with pytest.raises(ValueError):
        TensorBatches(x, y, batch_size=0)


def test_only_the_images_asked_for_are_decompressed(tmp_path):
    """A small .gz promising 200,000 blank images: asking for 100 reads 100, never 157 MB (627 MB as floats)."""
    import gzip
    import struct
    import subprocess
    import sys
    from pathlib import Path

    from live_training_dashboard.datasets import load_mnist_idx

    count = 200_000
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz", "wb") as handle:
        handle.write(bytes([0, 0, 8, 3]) + struct.pack(">3I", count, 28, 28))
        block = bytes(28 * 28 * 1000)
        for _ in range(count // 1000):
            handle.write(block)
    with gzip.open(tmp_path / "train-labels-idx1-ubyte.gz", "wb") as handle:
        handle.write(bytes([0, 0, 8, 1]) + struct.pack(">I", count) + bytes(count))
    assert (tmp_path / "train-images-idx3-ubyte.gz").stat().st_size < 1_000_000
    images, labels = load_mnist_idx(tmp_path, max_items=100)
    assert images.shape == (100, 1, 28, 28) and labels.shape == (100,)
    # The peak memory of a fresh process doing the same, against one that reads every image.
    peaks = []
    for items in (100, None):
        code = ("import resource, sys; from live_training_dashboard.datasets import load_mnist_idx; "
                f"load_mnist_idx(sys.argv[1], max_items={items}); "
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
        done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                              timeout=120, cwd=Path(__file__).resolve().parent.parent)
        assert done.returncode == 0, done.stderr[-1000:]
        peaks.append(int(done.stdout.split()[-1]))
    assert peaks[1] - peaks[0] > 500_000  # KB: reading all of them costs over 0.5 GB more
    assert read_idx(tmp_path / "train-labels-idx1-ubyte.gz", max_items=7).shape == (7,)


@pytest.mark.parametrize("name", ["circle", "xor", "gaussians"])
def test_tf_playground_sets_are_two_balanced_classes_that_follow_their_rule(name):
    import numpy as np

    from live_training_dashboard.datasets import POINT_SETS

    x, y = POINT_SETS[name](600, noise=0.0, seed=3)
    assert x.shape == (600, 2) and x.dtype == torch.float32 and set(y.tolist()) == {0, 1}
    assert abs(int(y.sum()) - 300) <= 150 and x.abs().max() <= 2.0
    again, _ = POINT_SETS[name](600, noise=0.0, seed=3)
    assert torch.equal(x, again)  # a seed gives the same points
    radius = x.norm(dim=1).numpy()
    if name == "circle":
        assert radius[y.numpy() == 1].max() <= 0.5 and radius[y.numpy() == 0].min() >= 0.7
    if name == "xor":
        assert np.array_equal((x[:, 0] * x[:, 1] >= 0).numpy(), y.numpy().astype(bool))
    if name == "gaussians":
        assert x[y == 1].mean(0).tolist() == pytest.approx([0.4, 0.4], abs=0.06)
    noisy, _ = POINT_SETS[name](600, noise=0.3, seed=3)
    assert float((noisy - x).std()) == pytest.approx(0.3, rel=0.15)
