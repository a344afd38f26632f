"""Datasets the dashboard trains on: 2-D points (spiral, circle, xor, gaussians), procedural 28x28
digits, real MNIST IDX files.

Everything is generated or read locally and deterministically from a seed; nothing is
downloaded at run time.
"""

from __future__ import annotations

import gzip
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

IMAGE_SIZE = 28
NUM_DIGIT_CLASSES = 10


@dataclass(frozen=True)
class Dataset:
    """Train/validation tensors plus what a chart needs to label them."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def is_image(self) -> bool:
        return self.x_train.dim() == 4


# --------------------------------------------------------------------------- spiral


def make_spiral(
    points_per_class: int = 500, num_classes: int = 3, noise: float = 0.2, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The classic interleaved-arms spiral (CS231n): features (N, 2) float32, labels (N,) int64."""
    if points_per_class < 2:
        raise ValueError(f"points_per_class must be at least 2, got {points_per_class}")
    if not 2 <= num_classes <= 10:
        raise ValueError(f"num_classes must be between 2 and 10, got {num_classes}")
    if not (noise >= 0 and math.isfinite(noise)):
        raise ValueError(f"noise must be a finite number >= 0, got {noise}")
    rng = np.random.default_rng(seed)
    radius = np.tile(np.linspace(0.0, 1.0, points_per_class), num_classes)
    arm = np.repeat(np.arange(num_classes), points_per_class)
    # Each arm turns through 4 radians, offset by a full arm width so arms interleave.
    theta = (
        np.linspace(0.0, 4.0, points_per_class)[None, :] + 4.0 * np.arange(num_classes)[:, None]
    ).ravel() + rng.normal(0.0, noise, radius.shape)
    features = np.stack([radius * np.sin(theta), radius * np.cos(theta)], axis=1)
    return torch.from_numpy(features.astype(np.float32)), torch.from_numpy(arm.astype(np.int64))


# --------------------------------------------------------------------------- TensorFlow Playground's sets
# Two classes in about [-1, 1]^2, as in playground.tensorflow.org (its coordinates divided by 5);
# noise: the standard deviation of a Gaussian jitter of every point, in those units.


def _two_class_points(num_samples: int, noise: float, seed: int):
    if num_samples < 2:
        raise ValueError(f"num_samples must be at least 2, got {num_samples}")
    if not (noise >= 0 and math.isfinite(noise)):
        raise ValueError(f"noise must be a finite number >= 0, got {noise}")
    return np.random.default_rng(seed), num_samples // 2, num_samples - num_samples // 2


def _as_tensors(points: np.ndarray, labels: np.ndarray, noise: float, rng) -> tuple[torch.Tensor, torch.Tensor]:
    points = points + rng.normal(0.0, noise, points.shape)
    return torch.from_numpy(points.astype(np.float32)), torch.from_numpy(labels.astype(np.int64))


def make_circle(num_samples: int = 500, noise: float = 0.05, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A disc (class 1) inside a ring (class 0)."""
    rng, inner, outer = _two_class_points(num_samples, noise, seed)
    radius = np.concatenate([rng.uniform(0.0, 0.5, inner), rng.uniform(0.7, 1.0, outer)])
    angle = rng.uniform(0.0, 2 * math.pi, num_samples)
    points = np.stack([radius * np.sin(angle), radius * np.cos(angle)], axis=1)
    return _as_tensors(points, np.concatenate([np.ones(inner), np.zeros(outer)]), noise, rng)


def make_xor(num_samples: int = 500, noise: float = 0.05, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 1 where x and y share a sign: the quadrants a single line cannot separate."""
    rng, _, _ = _two_class_points(num_samples, noise, seed)
    points = rng.uniform(-1.0, 1.0, (num_samples, 2))
    points += np.sign(points) * 0.06  # a small gap along the axes, as in the Playground
    return _as_tensors(points, (points[:, 0] * points[:, 1] >= 0).astype(np.int64), noise, rng)


def make_gaussians(num_samples: int = 500, noise: float = 0.05, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two Gaussian blobs around (0.4, 0.4) and (-0.4, -0.4): separable by a line."""
    rng, first, second = _two_class_points(num_samples, noise, seed)
    centres = np.concatenate([np.full((first, 2), 0.4), np.full((second, 2), -0.4)])
    points = centres + rng.normal(0.0, 0.2, (num_samples, 2))
    return _as_tensors(points, np.concatenate([np.ones(first), np.zeros(second)]), noise, rng)


POINT_SETS = {"circle": make_circle, "xor": make_xor, "gaussians": make_gaussians}


# --------------------------------------------------------------------------- procedural digits

# Each digit is a list of polylines in a unit box (x right, y down), drawn like handwriting.
def _ellipse(cx: float, cy: float, rx: float, ry: float, start: float = 0.0, end: float = 2 * math.pi, n: int = 10):
    angles = np.linspace(start, end, n)
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in angles]


DIGIT_STROKES: dict[int, list[list[tuple[float, float]]]] = {
    0: [_ellipse(0.5, 0.5, 0.28, 0.42, n=12)],
    1: [[(0.36, 0.26), (0.55, 0.08), (0.52, 0.92)]],
    2: [[(0.25, 0.3), (0.35, 0.13), (0.56, 0.08), (0.73, 0.2), (0.72, 0.4), (0.25, 0.9), (0.8, 0.9)]],
    3: [[(0.25, 0.14), (0.72, 0.14), (0.45, 0.45), (0.7, 0.58), (0.72, 0.8), (0.5, 0.93), (0.24, 0.84)]],
    4: [[(0.62, 0.92), (0.62, 0.08), (0.2, 0.66), (0.82, 0.66)]],
    5: [[(0.76, 0.1), (0.32, 0.1), (0.28, 0.46), (0.56, 0.4), (0.74, 0.56), (0.72, 0.8), (0.5, 0.93), (0.24, 0.84)]],
    6: [[(0.7, 0.1), (0.42, 0.28), (0.28, 0.6), (0.34, 0.86), (0.55, 0.93), (0.72, 0.76), (0.66, 0.56), (0.45, 0.52), (0.3, 0.64)]],
    7: [[(0.2, 0.12), (0.8, 0.12), (0.44, 0.92)], [(0.36, 0.52), (0.7, 0.52)]],
    8: [_ellipse(0.5, 0.29, 0.2, 0.19), _ellipse(0.5, 0.7, 0.25, 0.22)],
    9: [_ellipse(0.5, 0.32, 0.22, 0.22), [(0.72, 0.32), (0.62, 0.92)]],
}


def _digit_segments() -> tuple[np.ndarray, np.ndarray]:
    """Segment endpoints per digit, padded to one length: (10, S, 2, 2) and a mask (10, S)."""
    per_digit = []
    for digit in range(NUM_DIGIT_CLASSES):
        segments = [
            (line[i], line[i + 1]) for line in DIGIT_STROKES[digit] for i in range(len(line) - 1)
        ]
        per_digit.append(np.asarray(segments, dtype=np.float32))
    longest = max(len(s) for s in per_digit)
    padded = np.zeros((NUM_DIGIT_CLASSES, longest, 2, 2), dtype=np.float32)
    mask = np.zeros((NUM_DIGIT_CLASSES, longest), dtype=bool)
    for digit, segments in enumerate(per_digit):
        padded[digit, : len(segments)] = segments
        mask[digit, : len(segments)] = True
    return padded, mask


def make_mnist_like(num_samples: int = 6000, seed: int = 0, noise: float = 0.15) -> tuple[torch.Tensor, torch.Tensor]:
    """Procedural handwritten-looking digits: images (N, 1, 28, 28) in [0, 1], labels (N,) int64.

    Each image draws its digit's strokes after per-point wobble and a random affine map
    (rotation, anisotropic scale, shear, shift of up to ~4 px), with random stroke thickness,
    contrast and pixel noise. The shifts make it clearly harder for an MLP than for a CNN.
    """
    if num_samples < NUM_DIGIT_CLASSES:
        raise ValueError(f"num_samples must be at least {NUM_DIGIT_CLASSES}, got {num_samples}")
    if not (noise >= 0 and math.isfinite(noise)):
        raise ValueError(f"noise must be a finite number >= 0, got {noise}")
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_DIGIT_CLASSES, num_samples)
    templates, template_mask = _digit_segments()
    segments = templates[labels].copy()  # (N, S, 2, 2)
    mask = template_mask[labels]

    # Wobble every endpoint a little, as a hand would, then one affine map per image.
    segments += rng.normal(0.0, 0.025, segments.shape).astype(np.float32)
    angle = rng.uniform(-0.3, 0.3, num_samples)
    scale_x = rng.uniform(0.7, 1.1, num_samples)
    scale_y = rng.uniform(0.8, 1.1, num_samples)
    shear = rng.uniform(-0.35, 0.35, num_samples)
    shift = rng.uniform(-0.17, 0.17, (num_samples, 2))
    cos, sin = np.cos(angle), np.sin(angle)
    affine = np.empty((num_samples, 2, 2), dtype=np.float32)
    affine[:, 0, 0] = cos * scale_x
    affine[:, 0, 1] = -sin * scale_y + shear * scale_y
    affine[:, 1, 0] = sin * scale_x
    affine[:, 1, 1] = cos * scale_y
    centred = segments - 0.5
    moved = np.einsum("nij,nsej->nsei", affine, centred) + 0.5 + shift[:, None, None, :].astype(np.float32)
    # The unit box maps to the central 20x20 pixels, as in MNIST.
    pixel_segments = moved * 20.0 + 4.0

    thickness = rng.uniform(0.7, 1.9, num_samples).astype(np.float32)
    contrast = rng.uniform(0.6, 1.0, num_samples).astype(np.float32)
    coords = np.stack(np.meshgrid(np.arange(IMAGE_SIZE), np.arange(IMAGE_SIZE), indexing="xy"), -1)
    pixel_centres = coords.reshape(-1, 2).astype(np.float32) + 0.5  # (784, 2) as (x, y)

    # Render in torch: distance from every pixel centre to every stroke segment, in chunks.
    segment_start = torch.from_numpy(np.ascontiguousarray(pixel_segments[:, :, 0]))  # (N, S, 2)
    segment_vector = torch.from_numpy(np.ascontiguousarray(pixel_segments[:, :, 1])) - segment_start
    length_sq = (segment_vector * segment_vector).sum(-1).clamp_min(1e-6)  # (N, S)
    padding = torch.from_numpy(~mask)
    pixels = torch.from_numpy(pixel_centres)  # (784, 2)
    half_width = torch.from_numpy(thickness + 0.5)[:, None]
    ink_scale = torch.from_numpy(contrast)[:, None]
    images = torch.empty(num_samples, IMAGE_SIZE * IMAGE_SIZE)
    chunk = 64  # 64 images at a time: 165 MB of temporaries at most, and faster than 512 (cache)
    for start in range(0, num_samples, chunk):
        part = slice(start, min(start + chunk, num_samples))
        a, ab = segment_start[part][:, None], segment_vector[part][:, None]  # (n, 1, S, 2)
        offset = pixels[None, :, None, :] - a  # (n, 784, S, 2)
        t = ((offset * ab).sum(-1) / length_sq[part][:, None]).clamp_(0.0, 1.0)
        distance_sq = (offset - t[..., None] * ab).square_().sum(-1)
        distance_sq.masked_fill_(padding[part][:, None], float("inf"))
        distance = distance_sq.amin(-1).sqrt_()
        # Anti-aliased stroke: full ink inside the half-width, a one-pixel soft edge outside it.
        images[part] = (half_width[part] - distance).clamp_(0.0, 1.0) * ink_scale[part]
    images = images.numpy()
    # Pixel noise chunk by chunk (the same numbers as one draw): one float64 draw of every pixel
    # held 8 bytes per pixel at once, 1.25 GB more at 200,000 images.
    for start in range(0, num_samples, 4096):
        part = images[start:start + 4096]
        part += rng.normal(0.0, noise, part.shape).astype(np.float32)
    np.clip(images, 0.0, 1.0, out=images)
    return (
        torch.from_numpy(images.reshape(num_samples, 1, IMAGE_SIZE, IMAGE_SIZE)),
        torch.from_numpy(labels.astype(np.int64)),
    )


# --------------------------------------------------------------------------- MNIST IDX files

_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _open_maybe_gzip(path: Path):
    with open(path, "rb") as probe:
        is_gzip = probe.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if is_gzip else open(path, "rb")


def read_idx(path: str | Path, max_items: int | None = None) -> np.ndarray:
    """Read an IDX file (the MNIST format), raw or gzip-compressed, into a numpy array.

    max_items: read (and decompress) only the first items along the first axis; a small .gz
    that promises 500,000 blank images never expands beyond what is asked for.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No IDX file at {path}")
    with _open_maybe_gzip(path) as handle:
        head = handle.read(4)
        if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_DTYPES:
            raise ValueError(f"{path.name} is not an IDX file (bad magic number)")
        dtype, ndim = _IDX_DTYPES[head[2]], head[3]
        dims = handle.read(4 * ndim)
        if len(dims) < 4 * ndim:
            raise ValueError(f"{path.name} is truncated: its header is incomplete")
        shape = struct.unpack(f">{ndim}I", dims)
        items = shape[0] if shape else 1
        wanted = items if max_items is None else min(items, max(int(max_items), 0))
        item_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        data = handle.read(wanted * item_bytes)
        if len(data) < wanted * item_bytes:
            raise ValueError(f"{path.name} is truncated: header promises {items * item_bytes} bytes of data, "
                             f"found {len(data)}")
        if wanted == items and handle.read(1):
            raise ValueError(f"{path.name} is truncated or padded: header promises {items * item_bytes} bytes "
                             "of data, found more")
    shape = (wanted, *shape[1:]) if shape else ()
    return np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write an array as an IDX file; gzip when asked or when the name ends in .gz."""
    path = Path(path)
    codes = {dtype.newbyteorder("="): code for code, dtype in _IDX_DTYPES.items()}
    native = np.asarray(array)
    key = native.dtype.newbyteorder("=")
    if key not in codes:
        raise ValueError(f"IDX cannot store dtype {native.dtype}")
    header = bytes([0, 0, codes[key], native.ndim]) + struct.pack(f">{native.ndim}I", *native.shape)
    payload = header + native.astype(_IDX_DTYPES[codes[key]]).tobytes()
    if compress is None:
        compress = path.suffix == ".gz"
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


def idx_shape(path: str | Path) -> tuple[int, ...]:
    """The array shape an IDX file's header promises, reading only the header (raw or .gz)."""
    path = Path(path)
    with _open_maybe_gzip(path) as handle:
        head = handle.read(4)
        if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_DTYPES:
            raise ValueError(f"{path.name} is not an IDX file (bad magic number)")
        dims = handle.read(4 * head[3])
    if len(dims) < 4 * head[3]:
        raise ValueError(f"{path.name} is truncated: its header is incomplete")
    return tuple(struct.unpack(f">{head[3]}I", dims))


def mnist_idx_files(folder: str | Path) -> tuple[Path, Path]:
    """The (images, labels) IDX files of an MNIST folder, or FileNotFoundError saying what is missing."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"MNIST folder not found: {folder}")
    images_path = _find_idx(folder, "train-images-idx3-ubyte")
    labels_path = _find_idx(folder, "train-labels-idx1-ubyte")
    if images_path is None or labels_path is None:
        raise FileNotFoundError(
            f"{folder} needs train-images-idx3-ubyte and train-labels-idx1-ubyte (optionally .gz)"
        )
    return images_path, labels_path


def _find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / candidate).is_file():
            return folder / candidate
    return None


def load_mnist_idx(folder: str | Path, max_items: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Load MNIST's training images and labels from a folder of IDX files (raw or .gz).

    Returns images (N, 1, 28, 28) scaled to [0, 1] and labels (N,) int64; with max_items, only
    the first max_items of each file are read.
    """
    images_path, labels_path = mnist_idx_files(folder)
    images, labels = read_idx(images_path, max_items), read_idx(labels_path, max_items)
    promised = (idx_shape(images_path)[:1], idx_shape(labels_path)[:1])  # the whole files must agree too
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels) or promised[0] != promised[1]:
        raise ValueError(
            f"MNIST files disagree: images {images.shape}, labels {labels.shape}; "
            "expected (N, H, W) images and N labels"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_DIGIT_CLASSES):
        raise ValueError("MNIST labels must lie in 0..9")
    scaled = images.astype(np.float32) / (255.0 if images.dtype == np.uint8 else max(float(images.max()), 1.0))
    return torch.from_numpy(scaled[:, None]), torch.from_numpy(labels.astype(np.int64))


# --------------------------------------------------------------------------- split and batches


def train_val_split(
    features: torch.Tensor, labels: torch.Tensor, val_fraction: float = 0.2, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shuffle with a fixed seed and cut off the last val_fraction as validation."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    n = len(features)
    n_val = int(round(n * val_fraction))
    if n_val < 1 or n - n_val < 1:
        raise ValueError(f"{n} samples are too few to split with val_fraction={val_fraction}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val, train = order[:n_val], order[n_val:]
    return features[train], labels[train], features[val], labels[val]


def build_dataset(
    name: str,
    *,
    num_samples: int = 1500,
    noise: float = 0.2,
    num_classes: int = 3,
    train_fraction: float = 1.0,
    val_fraction: float = 0.2,
    seed: int = 0,
    mnist_path: str | Path | None = None,
) -> Dataset:
    """Build a named dataset and split it. name: "spiral", "mnist_like" or "mnist_idx".

    train_fraction < 1 keeps only that share of the training split (to provoke overfitting);
    validation stays the same.
    """
    if name == "spiral":
        x, y = make_spiral(max(2, num_samples // num_classes), num_classes, noise, seed)
        classes = num_classes
    elif name in POINT_SETS:
        x, y = POINT_SETS[name](num_samples, noise, seed)
        classes = 2
    elif name == "mnist_like":
        x, y = make_mnist_like(num_samples, seed, noise)
        classes = NUM_DIGIT_CLASSES
    elif name == "mnist_idx":
        if not mnist_path:
            raise ValueError("mnist_idx needs a folder path holding the IDX files")
        x, y = load_mnist_idx(mnist_path, num_samples or None)
        classes = NUM_DIGIT_CLASSES
    else:
        raise ValueError(f"Unknown dataset {name!r}: choose spiral, circle, xor, gaussians, mnist_like or mnist_idx")
    x_train, y_train, x_val, y_val = train_val_split(x, y, val_fraction, seed)
    if not 0.0 < train_fraction <= 1.0:
        raise ValueError(f"train_fraction must be in (0, 1], got {train_fraction}")
    if train_fraction < 1.0:
        keep = max(1, int(len(x_train) * train_fraction))
        x_train, y_train = x_train[:keep], y_train[:keep]
    return Dataset(name, x_train, y_train, x_val, y_val, classes)


class TensorBatches:
    """Mini-batches over in-memory tensors, reshuffled each epoch from a seeded generator.

    Much cheaper per batch than a DataLoader for data that already sits in memory (or on
    the GPU), which matters when a batch of a small MLP takes a few hundred microseconds.
    """

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, batch_size: int, shuffle: bool = True, seed: int = 0):
        if len(features) != len(labels):
            raise ValueError(f"{len(features)} inputs but {len(labels)} labels")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if len(features) == 0:
            raise ValueError("cannot make batches of an empty dataset")
        self.features, self.labels = features, labels
        self.batch_size = batch_size
        self.shuffle = shuffle
        self._generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(len(self.features) / self.batch_size)

    def to(self, device: torch.device | str) -> TensorBatches:
        self.features, self.labels = self.features.to(device), self.labels.to(device)
        return self

    def __iter__(self):
        n = len(self.features)
        if self.shuffle:
            order = torch.randperm(n, generator=self._generator).to(self.features.device)
            features, labels = self.features[order], self.labels[order]
        else:
            features, labels = self.features, self.labels
        for start in range(0, n, self.batch_size):
            yield features[start : start + self.batch_size], labels[start : start + self.batch_size]
