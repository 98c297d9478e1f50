"""benchmarks/rate_distortion.py: BD-rate and the interpolation at equal PSNR against closed
forms, the quality hook, and the script end to end on a handful of images."""

import glob
import io
import math
import os
import sys
import tarfile

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import rate_distortion as rd  # noqa: E402

pytest.importorskip("bjontegaard", reason="`pip install bjontegaard` (the benchmarks extra) runs the BD-rate tests")


def test_bd_rate_of_a_constant_rate_factor_is_the_factor():
    # test needs exactly 0.6x the anchor's rate at every PSNR: BD-rate = 0.6 - 1 = -40%, whatever the curve's shape
    psnr = np.array([22.0, 24.5, 27.0, 29.0, 33.0, 38.0])
    rate = 40.0 * np.exp(0.21 * psnr) * (1.0 + 0.2 * np.sin(psnr))
    for factor in (0.6, 1.0, 2.5):
        value, span = rd.bd_rate(rate, psnr, factor * rate, psnr)
        assert value == pytest.approx(100.0 * (factor - 1.0), abs=1e-9)
        assert span == (22.0, 38.0)


def test_bd_rate_of_two_lines_over_their_overlap_only():
    # log10 R = (D - 20) / 10 for the anchor on [20, 40], (D - 24) / 8 for the test on [25, 35]; PCHIP reproduces
    # lines, so the mean log-rate gap over the overlap [25, 35] is the gap at its midpoint, 30 dB: 0.75 - 1.0
    anchor_psnr = np.linspace(20.0, 40.0, 7)
    test_psnr = np.array([25.0, 28.0, 31.0, 35.0])
    value, span = rd.bd_rate(10 ** ((anchor_psnr - 20) / 10), anchor_psnr, 10 ** ((test_psnr - 24) / 8), test_psnr)
    assert span == (25.0, 35.0)
    assert value == pytest.approx(100.0 * (10**-0.25 - 1.0), abs=1e-9)
    # swapping the roles inverts the rate ratio over the same range
    back, _ = rd.bd_rate(10 ** ((test_psnr - 24) / 8), test_psnr, 10 ** ((anchor_psnr - 20) / 10), anchor_psnr)
    assert back == pytest.approx(100.0 * (10**0.25 - 1.0), abs=1e-9)


def test_bd_rate_is_undefined_without_a_curve_or_an_overlap():
    psnr = np.array([20.0, 25.0, 30.0])
    value, reason = rd.bd_rate(10 ** (psnr / 10), psnr, [58.3], [25.1])
    assert value is None and "one operating point" in reason
    value, reason = rd.bd_rate(10 ** (psnr / 10), psnr, [100.0, 200.0], [31.0, 33.0])
    assert value is None and "no overlap" in reason


def test_pareto_front_drops_points_another_point_beats():
    # JPEG on the q75 copy: quality 75 re-encodes almost without loss, so quality 85 (larger, worse) is dropped
    rates = [599.7, 634.2, 550.9, 725.3, 550.9]
    psnrs = [79.1, 40.4, 30.7, 46.4, 29.0]
    front_rates, front_psnrs = rd.pareto_front(rates, psnrs)
    assert front_rates.tolist() == [550.9, 599.7]
    assert front_psnrs.tolist() == [30.7, 79.1]


def test_rate_at_psnr_interpolates_log_rate_and_refuses_to_extrapolate():
    psnr = np.array([20.0, 23.0, 29.0, 40.0])
    rates = 10 ** ((psnr - 20) / 10)  # a line in log rate: PCHIP is exact
    assert rd.rate_at_psnr(rates, psnr, 25.0) == pytest.approx(10**0.5, rel=1e-12)
    assert rd.rate_at_psnr(rates, psnr, 19.9) is None
    assert rd.rate_at_psnr(rates, psnr, 40.1) is None


def test_goals_are_judged_against_the_interpolated_curves():
    classic = [{"codec": label, "bytes/image": 10 ** ((d - 10) / 10), "PSNR (dB)": d}
               for label in ("JPEG", "WebP", "AVIF") for d in (20.0, 30.0, 40.0)]
    # at 25 dB WebP and AVIF need 10^1.5 = 31.6 bytes: 30 bytes beats them, 40 does not
    for nbytes, verdict in ((30.0, "yes"), (40.0, "no")):
        vaezoo = [{"codec": "vaezoo m, one file per image", "setting": "its one operating point",
                   "bytes/image": nbytes, "PSNR (dB)": 25.0}]
        per_quality, bd_rows, goal_lines = rd.comparison(classic + vaezoo, "bytes/image", goals=True)
        assert per_quality[0]["fewer bytes than WebP and AVIF"] == verdict
        assert per_quality[0]["WebP at this PSNR"].startswith("31.62 (")
        assert all(row["BD-rate"] == "undefined: one operating point" for row in bd_rows)
        assert goal_lines[0].endswith(("met (1 of 1 qualities)" if verdict == "yes" else
                                       "not met (0 of 1 qualities)"))


def test_parse_qualities():
    assert rd.parse_qualities("0-4,5-100:5") == [0, 1, 2, 3, 4, *range(5, 101, 5)]
    assert rd.parse_qualities("50") == [50]
    for bad in ("5-200", "x", "10-5", "1-9:0"):
        with pytest.raises(ValueError, match="--qualities"):
            rd.parse_qualities(bad)


def test_operating_points_of_an_rq_vae_need_the_quality_knob(monkeypatch):
    import vaezoo
    from vaezoo import codec

    model = vaezoo.RQVAE(input_shape=(8, 8, 3), depth=3, num_embeddings=8, embedding_dim=4, hidden_channels=8,
                         residual_channels=4, num_residual_blocks=1, seed=0)
    vq = vaezoo.VQVAE(input_shape=(8, 8, 3), num_embeddings=8, embedding_dim=4, hidden_channels=8,
                      residual_channels=4, num_residual_blocks=1, seed=0)
    assert rd.operating_points(vq) == [None]
    if "quality" not in __import__("inspect").signature(codec.compress).parameters:
        with pytest.raises(SystemExit, match="takes no quality= argument"):
            rd.operating_points(model)

    def compress_with_a_knob(model, images, mode="auto", quality=None):
        raise AssertionError("not called")

    monkeypatch.setattr(codec, "compress", compress_with_a_knob)
    assert rd.operating_points(model) == [1, 2, 3]


def test_vaezoo_points_of_every_quality_of_an_rq_vae_in_both_file_layouts():
    """Every quality's single-file and batch-file points, their bytes those of `codec.compress`
    itself (a second quality once broke the batch branch: `data` rebound to the file's bytes)."""
    import vaezoo
    from vaezoo import codec

    model = vaezoo.RQVAE(input_shape=(16, 16, 3), depth=2, num_embeddings=16, embedding_dim=8, hidden_channels=16,
                         residual_channels=8, num_residual_blocks=1, context_model={"channels": 8, "layers": 2,
                                                                                  "condition_depths": 1}, seed=0)
    device = codec.KerasCodecModel(model)
    images = list(np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8))
    points = rd.vaezoo_points(device, "tiny", [1, 2], images, batch_file=True, progress=lambda _: None, timed=2)
    assert [(p["codec"], p["quality"]) for p in points] == [
        (f"tiny, {layout}", q) for q in (1, 2) for layout in ("one file per image", "one batch file")]
    for q, (single, batch) in zip((1, 2), zip(points[::2], points[1::2])):
        assert single["bytes/image"] == np.mean([len(codec.compress(device, [image], quality=q)) for image in images])
        assert batch["bytes/image"] == len(codec.compress(device, images, quality=q)) / len(images)
    assert points[2]["bytes/image"] > points[0]["bytes/image"]


def _tiny_cifar_tar(path):
    """The README's eight CIFAR inputs as a test split in the CIFAR-10 JPEG copy's layout."""
    with tarfile.open(path, "w:gz") as tar:
        for i, png in enumerate(sorted(glob.glob(os.path.join(ROOT, "docs", "images", "inputs", "cifar_*.png")))):
            with open(png, "rb") as f:
                content = f.read()
            info = tarfile.TarInfo(f"test/class{i % 2}/{i:04d}.png")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))


def test_script_end_to_end_on_a_handful_of_images(tmp_path):
    skimage = pytest.importorskip("skimage", reason="scikit-image (the test extra) holds the sample photo")
    import skimage.data
    from PIL import Image

    from vaezoo.data import load_image_tar

    data = str(tmp_path / "cifar.tar.gz")
    _tiny_cifar_tar(data)
    images, _ = load_image_tar(data, "test")
    # the Keras path: the LiteRT export (the default) takes ~15 s here and is tested with the codec
    cifar, photos = rd.main(["--data", data, "--qualities", "10,60", "--photos", "chelsea", "--no-append",
                             "--runtime", "keras", "--figure-dir", str(tmp_path / "figures")])
    assert [(p["codec"], p["quality"]) for p in cifar[:6]] == [
        (c, q) for c in ("JPEG", "WebP", "AVIF") for q in (10, 60)]
    # the bookkeeping against Pillow itself: mean file size and bits per pixel of WebP quality 10
    sizes = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="WEBP", quality=10, method=6)
        sizes.append(len(buffer.getvalue()))
    webp = cifar[2]
    assert webp["bytes/image"] == pytest.approx(np.mean(sizes))
    assert webp["bits/pixel"] == pytest.approx(8 * np.mean(sizes) / (32 * 32))
    single, batch = cifar[6], cifar[7]
    assert single["codec"] == "vaezoo vq-vae-cifar, one file per image" and batch["codec"].endswith("one batch file")
    # one batch file shares its container among the images; the decoded images are the same codes' either way
    assert batch["bytes/image"] < single["bytes/image"]
    assert batch["PSNR (dB)"] == pytest.approx(single["PSNR (dB)"], abs=0.05)
    assert 15 < single["PSNR (dB)"] < 40 and 0 < single["SSIM"] < 1 and math.isfinite(single["decode ms/image"])
    # the photo: its own file per codec and quality, rate in bits per pixel of its 451x300 pixels
    assert [p["codec"] for p in photos] == ["JPEG"] * 2 + ["WebP"] * 2 + ["AVIF"] * 2 + [
        "vaezoo vq-vae-cifar, one file per image"]
    photo = skimage.data.chelsea()
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="AVIF", quality=60, speed=6, max_threads=1)
    assert photos[5]["bits/pixel"] == pytest.approx(8 * len(buffer.getvalue()) / (451 * 300))
    for name in ("rate_distortion_cifar.png", "rate_distortion_photos.png"):
        with Image.open(tmp_path / "figures" / name) as figure:
            assert figure.size[0] > 500
