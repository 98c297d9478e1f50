"""Image grids as PNG files (Pillow), written atomically.

Example:
    >>> grid = image_grid(model.sample(64, seed=0), columns=8)     # uint8 (H, W, C)
    >>> save_png(grid, "samples.png")
    >>> save_rows_png({"input": x[:8], "reconstruction": model.reconstruct(x[:8])}, "recon.png")
"""

import numpy as np

from vaezoo.io import atomic_path


def as_uint8(images):
    images = np.asarray(images)
    if images.dtype != np.uint8:
        images = np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)
    return images


def image_grid(images, columns=8, padding=2, background=128):
    """Tile a batch `(n, h, w, c)` (uint8 or float in [0, 1]) into one uint8 image."""
    images = as_uint8(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"image_grid expects (n, height, width, 1 or 3), got shape {images.shape}.")
    n, h, w, c = images.shape
    columns = max(1, min(columns, n))
    rows = -(-n // columns)
    grid = np.full((rows * (h + padding) + padding, columns * (w + padding) + padding, c), background, np.uint8)
    for i, image in enumerate(images):
        r, col = divmod(i, columns)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[top : top + h, left : left + w] = image
    return grid


def save_png(grid, path, scale=1):
    """Write a uint8 image `(h, w, c)` to a PNG; `scale` enlarges small images (nearest)."""
    from PIL import Image

    grid = as_uint8(grid)
    image = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path


def save_rows_png(rows, path, scale=1, label_width=110):
    """One labelled row per entry of `rows` ({label: images}); e.g. inputs over reconstructions."""
    from PIL import Image, ImageDraw

    grids = [image_grid(images, columns=len(images)) for images in rows.values()]
    width = max(g.shape[1] for g in grids)
    channels = max(g.shape[2] for g in grids)
    strips = []
    for label, grid in zip(rows, grids):
        if grid.shape[2] != channels:
            grid = np.repeat(grid, channels, axis=2)
        strip = np.full((grid.shape[0], label_width + width, channels), 255, np.uint8)
        strip[:, label_width : label_width + grid.shape[1]] = grid
        image = Image.fromarray(strip[..., 0] if channels == 1 else strip)
        ImageDraw.Draw(image).text((4, grid.shape[0] // 2 - 5), str(label), fill=0)
        strips.append(np.asarray(image).reshape(strip.shape))
    return save_png(np.concatenate(strips, axis=0), path, scale=scale)


def interpolate(model, first, second, steps=8, condition=None):
    """Images along the straight line between the posterior means of two images.

    Args:
        model: a vaezoo model (for a VQ-VAE the line runs between quantized latents).
        first, second: single images `(h, w, c)` (uint8 or float in [0, 1]).
        steps: number of images on the line, ends included (>= 2).
        condition: for conditional models, one condition used along the whole line.

    Returns:
        float32 images `(steps, h, w, c)` in [0, 1].
    """
    import tensorflow as tf

    from vaezoo.validation import check_int

    check_int("steps", steps, 2)
    pair = np.stack([np.asarray(first), np.asarray(second)])
    kw = {} if condition is None else {"condition": np.repeat(np.asarray(condition)[None], 2, axis=0)}
    z = model.encode(pair, **kw).mean()
    weights = tf.reshape(tf.linspace(0.0, 1.0, steps), [steps] + [1] * (len(z.shape) - 1))
    line = (1.0 - weights) * z[:1] + weights * z[1:]
    kw = {} if condition is None else {"condition": np.repeat(np.asarray(condition)[None], steps, axis=0)}
    return np.asarray(model.likelihood.image(model.decode(line, **kw)))
