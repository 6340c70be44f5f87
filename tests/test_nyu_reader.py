"""The reader of ``nyu_depth_v2_labeled.mat`` on small files written in the real v7.3 layout."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.io
from nyu_fixtures import MARKER, write_nyu_labeled

from xmodal.core.errors import DataError
from xmodal.data.nyu.reader import NYULabeledFile, valid_depth_mask, validate

H, W, N = 48, 64, 4


@pytest.fixture(scope="module")
def labeled(tmp_path_factory):
    path = tmp_path_factory.mktemp("nyu") / "nyu_depth_v2_labeled.mat"
    return path, write_nyu_labeled(path, frames=N, height=H, width=W)


def test_fixture_has_the_real_layout(labeled):
    path, _ = labeled
    assert path.read_bytes()[:19] == b"MATLAB 7.3 MAT-file"
    with h5py.File(path, "r") as f:
        assert f["images"].shape == (N, 3, W, H) and f["images"].dtype == np.uint8
        assert f["depths"].shape == f["labels"].shape == (N, W, H)
        assert f["accelData"].shape == (4, N)
        assert f["names"].shape == (1, 894) and f["sceneTypes"].shape == (1, N)
        assert f["labels"].attrs["MATLAB_class"] == b"uint16"
        target = f[f["sceneTypes"][0, 1]]  # a cell entry: reference to (len, 1) uint16
        assert target.dtype == np.uint16 and target.shape[1] == 1
        assert target.attrs["MATLAB_class"] == b"char"


def test_planted_pattern_comes_back_in_place_for_every_key(labeled):
    path, planted = labeled
    row, col = MARKER
    with NYULabeledFile(path) as nyu:
        assert len(nyu) == N and (nyu.height, nyu.width) == (H, W)
        for i in (0, N - 1, 1):
            frame = nyu.frame(i)
            checks = {
                "rgb": (np.uint8, (H, W, 3)),
                "depth": (np.float32, (H, W)),
                "raw_depth": (np.float32, (H, W)),
                "labels": (np.uint16, (H, W)),
                "instances": (np.uint8, (H, W)),
            }
            for key, (dtype, shape) in checks.items():
                got = getattr(frame, key)
                assert got.dtype == dtype and got.shape == shape, key
                assert np.array_equal(got, planted[key][i]), key
            assert tuple(frame.rgb[row, col]) == (255, 0, 128)
            assert frame.depth[row, col] == 9.5 and frame.raw_depth[row, col] == 0
            assert frame.labels[row, col] == 894 and frame.instances[row, col] == 251
            # Rows and columns ramp differently, so a transposed read could not match this.
            assert frame.depth[1, 0] - frame.depth[0, 0] == pytest.approx(0.02, abs=1e-4)
            assert frame.depth[0, 1] - frame.depth[0, 0] == pytest.approx(0.005, abs=1e-4)
            assert np.allclose(frame.accel, planted["accel"][i])
            assert frame.scene == planted["scenes"][i]
            assert frame.scene_type == planted["scene_types"][i]
        assert nyu.frame(-1).index == N - 1
        with pytest.raises(IndexError):
            nyu.frame(N)


def test_strings_decode_as_utf16_without_nuls(labeled):
    path, planted = labeled
    with NYULabeledFile(path) as nyu:
        names, types, scenes = nyu.names(), nyu.scene_types(), nyu.scenes()
    assert names == planted["names"] and len(names) == 894
    assert names[:3] == ["book", "chaise longue", "café table"]
    assert types == planted["scene_types"] and "excercise_room" in types
    assert scenes == planted["scenes"]
    assert not any("\x00" in s for s in names + types + scenes)


def test_raw_depth_is_cast_from_whatever_dtype_is_stored(tmp_path):
    raw = np.random.default_rng(1).random((H, W, 2)) * 5  # float64 instead of single
    path = tmp_path / "f.mat"
    write_nyu_labeled(path, frames=2, height=H, width=W, rawDepths=raw)
    with NYULabeledFile(path) as nyu:
        got = nyu.frame(1).raw_depth
    assert got.dtype == np.float32 and np.array_equal(got, raw[:, :, 1].astype(np.float32))


def test_frame_reads_only_its_own_slice(labeled, monkeypatch):
    path, _ = labeled
    reads: list[tuple[str, object]] = []
    original = h5py.Dataset.__getitem__

    def spy(self, args, *rest, **kw):
        reads.append((self.name, args))
        return original(self, args, *rest, **kw)

    with NYULabeledFile(path) as nyu:
        monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
        nyu.frame(1)
        monkeypatch.undo()
        big = {f"/{k}" for k in ("images", "depths", "rawDepths", "labels", "instances")}
        pixel_reads = [args for name, args in reads if name in big]
        assert len(pixel_reads) == 5 and all(args == (1,) for args in pixel_reads)
        # No full copies held: nothing on the reader is an array as large as a whole key.
        assert not any(
            isinstance(v, np.ndarray) and v.size >= N * H * W for v in vars(nyu).values()
        )


def test_valid_depth_mask():
    depth = np.array([[0.0, 1.5], [np.nan, np.inf]], dtype=np.float32)
    assert np.array_equal(valid_depth_mask(depth), [[False, True], [False, False]])


# ---------------------------------------------------------------- validate()


def test_validate_summarises_a_good_file(labeled):
    path, _ = labeled
    info = validate(path)
    assert (info["frames"], info["height"], info["width"]) == (N, H, W)
    assert info["file_size"] == path.stat().st_size
    assert info["keys"]["images"] == {"shape": [N, 3, W, H], "dtype": "uint8"}
    assert info["keys"]["labels"]["dtype"] == "uint16"


def test_validate_rejects_a_text_file(tmp_path):
    path = tmp_path / "nyu.mat"
    path.write_text("<html>404 not found</html>\n")
    with pytest.raises(DataError, match=r"nyu\.mat.*not an HDF5 file.*v7\.3"):
        validate(path)


def test_validate_rejects_a_matlab_v5_file(tmp_path):
    path = tmp_path / "v5.mat"
    scipy.io.savemat(path, {"depths": np.ones((4, 4))})
    with pytest.raises(DataError, match=r"v5\.mat.*MATLAB v5.*v7\.3"):
        validate(path)
    with pytest.raises(DataError, match="MATLAB v5"):
        NYULabeledFile(path)


def test_validate_names_a_missing_key(tmp_path):
    path = tmp_path / "nodepth.mat"
    write_nyu_labeled(path, frames=2, height=H, width=W, depths=None)
    with pytest.raises(DataError, match=r"nodepth\.mat.*'depths'"):
        validate(path)


def test_validate_names_a_wrong_shape(tmp_path):
    path = tmp_path / "badlabels.mat"
    write_nyu_labeled(path, frames=2, height=H, width=W, labels=np.zeros((H - 1, W, 2), np.uint16))
    with pytest.raises(DataError, match=r"badlabels\.mat.*'labels'.*\(2, 64, 47\).*\(2, 64, 48\)"):
        validate(path)


def test_validate_rejects_a_truncated_file(labeled, tmp_path):
    path, _ = labeled
    half = tmp_path / "half.mat"
    data = path.read_bytes()
    half.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"half\.mat.*truncated"):
        validate(half)
    with pytest.raises(DataError, match="truncated"):
        NYULabeledFile(half)


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        validate(tmp_path / "absent.mat")
