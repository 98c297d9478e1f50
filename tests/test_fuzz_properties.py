"""Property-based tests (hypothesis): distribution layers' shapes and finite log-probs for any
parameters, archive reading that refuses member paths escaping their folder, and an export's
codebooks.npy read as the right array or refused with a ValueError whatever its bytes."""

import io
import tarfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vaezoo import data
from vaezoo import distributions as D

finite = st.floats(-30.0, 30.0, allow_nan=False, width=32)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(params=arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 6).map(lambda d: 2 * d)), elements=finite))
def test_diagonal_gaussian_gives_one_finite_log_prob_per_example(params):
    q = D.DiagonalGaussian()(params)
    z = q.sample(seed=[1, 2])
    lp = np.asarray(q.log_prob(z))
    assert lp.shape == (params.shape[0],) and np.all(np.isfinite(lp))
    assert np.all(np.isfinite(np.asarray(D.kl_divergence(q, D.StandardNormalPrior((params.shape[1] // 2,))()))))


@SETTINGS
@given(logits=arrays(np.float32, (2, 4, 4, 1), elements=finite),
       x=arrays(np.float32, (2, 4, 4, 1), elements=st.sampled_from([0.0, 1.0])))
def test_bernoulli_log_prob_is_finite_and_nonpositive(logits, x):
    lp = np.asarray(D.BernoulliLikelihood()(logits).log_prob(x))
    assert lp.shape == (2,) and np.all(np.isfinite(lp)) and np.all(lp <= 1e-6)


@SETTINGS
@given(params=arrays(np.float32, (2, 3, 3, 3 * 3 * 2), elements=finite),
       x=arrays(np.float32, (2, 3, 3, 3), elements=st.integers(0, 255).map(float)))
def test_discretized_logistic_log_prob_is_a_finite_log_probability(params, x):
    """Any decoder output, any 8-bit image: a finite log-probability <= 0."""
    lp = np.asarray(D.DiscretizedLogisticMixture(num_components=2)(params).log_prob(x))
    assert lp.shape == (2,) and np.all(np.isfinite(lp)) and np.all(lp <= 1e-4)


@SETTINGS
@given(params=arrays(np.float32, (1, 2, 2, 2), elements=finite), x=arrays(np.float32, (1, 2, 2, 1), elements=st.floats(0, 1, width=32)))
def test_gaussian_per_pixel_scale_log_prob_is_finite(params, x):
    lp = np.asarray(D.GaussianLikelihood(scale="per_pixel")(params).log_prob(x))
    assert lp.shape == (1,) and np.all(np.isfinite(lp))


def _tar_with(tmp_path, member_name):
    path = tmp_path / "images.tar.gz"
    png = io.BytesIO()
    from PIL import Image

    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(png, format="PNG")
    with tarfile.open(path, "w:gz") as tar:
        for name in ("train/cat/0.png", member_name):
            info = tarfile.TarInfo(name)
            info.size = len(png.getvalue())
            tar.addfile(info, io.BytesIO(png.getvalue()))
    return str(path)


@pytest.mark.parametrize("member", ["../evil.png", "train/../../evil.png", "/etc/evil.png"])
def test_archive_members_escaping_their_folder_are_refused(tmp_path, member):
    with pytest.raises(ValueError, match="unsafe member path"):
        data.load_image_tar(_tar_with(tmp_path, member), "train")
    assert not (tmp_path.parent / "evil.png").exists()


def test_safe_archive_reads(tmp_path):
    images, labels = data.load_image_tar(_tar_with(tmp_path, "train/dog/1.png"), "train")
    assert images.shape == (2, 4, 4, 3) and list(labels) == [0, 1]


def _npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


VALID_CODEBOOKS = _npy(np.arange(2 * 8 * 4, dtype=np.float32).reshape(2, 8, 4) / 10)


@settings(max_examples=300, deadline=None)
@given(edits=st.lists(st.tuples(st.integers(0, len(VALID_CODEBOOKS) - 1), st.integers(0, 255)), max_size=6),
       cut=st.integers(0, len(VALID_CODEBOOKS)))
def test_codebooks_npy_of_any_bytes_is_read_right_or_refused(edits, cut):
    from vaezoo.codec import read_codebooks

    content = bytearray(VALID_CODEBOOKS)
    for position, value in edits:
        content[position] = value
    try:
        codebooks = read_codebooks(bytes(content[:cut]), 2, 8)
    except ValueError as error:
        assert "codebooks.npy" in str(error)
        return
    assert codebooks.shape[:2] == (2, 8) and codebooks.dtype == np.float32 and np.all(np.isfinite(codebooks))


@pytest.mark.parametrize("content, message", [
    (b"", "not a numpy array file"),
    (_npy(np.zeros((2, 8, 4), object)), "not a numpy array file"),  # pickled objects are never loaded
    (_npy(np.zeros((2, 8), np.float32)), r"shape \(2, 8\), expected \(2, 8, C\)"),
    (_npy(np.zeros((2, 8, 4), np.int32)), "finite floats"),
    (_npy(np.full((2, 8, 4), np.nan, np.float32)), "finite floats"),
])
def test_codebooks_npy_refusals_name_the_file(content, message):
    from vaezoo.codec import read_codebooks

    with pytest.raises(ValueError, match=message):
        read_codebooks(content, 2, 8, where="bundle")
    np.testing.assert_array_equal(read_codebooks(VALID_CODEBOOKS, 2, 8), np.load(io.BytesIO(VALID_CODEBOOKS)))
