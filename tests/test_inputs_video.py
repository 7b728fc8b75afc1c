"""Video files, frame folders and cropping (explicit and ``auto``) on clips the tests encode themselves."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import SimpleITK as sitk
from inputs_factory import multiframe_frames, ultrasound_clip, write_png_folder, write_video

from cineprop.errors import InputError
from cineprop.io import Volume, ingest, read_any, write_image
from cineprop.io.crop import AUTO_MARGIN, auto_crop_box, crop_volume, parse_crop
from cineprop.io.frames import natural_key


@pytest.fixture(scope="module")
def clip():
    """(T×rows×cols uint8 frames of a synthetic echo clip, its sector's bounding box y0, y1, x0, x1)."""
    return ultrasound_clip(t=8, rows=96, cols=128)


@pytest.mark.parametrize("suffix, codec", [(".mp4", None), (".avi", "mjpeg")])
def test_video_roundtrip(tmp_path, clip, suffix, codec):
    frames, _ = clip
    path = write_video(tmp_path / f"clip{suffix}", frames, fps=25, codec=codec)
    result = ingest(path)
    volume = result.volume
    assert result.kind == "video" and volume.shape == (128, 96, 8)  # i (columns) × j (rows) × T
    assert np.abs(volume.array - frames.transpose(2, 1, 0)).mean() < 3  # lossy codec, grey kept
    truth = frames.transpose(2, 1, 0).astype(np.float32)
    for t in range(8):  # frame order kept: each decoded frame is closest to the frame it came from
        errors = [np.abs(volume.array[:, :, t] - truth[:, :, s]).mean() for s in range(8)]
        assert int(np.argmin(errors)) == t
    assert volume.geometry.spacing == pytest.approx((1.0, 1.0, 40.0))  # 25 fps → 40 ms
    assert "8 frames at 25 fps" in result.description


def test_frame_folder_natural_order_and_grey(tmp_path):
    frames = multiframe_frames(t=12)
    names = [f"frame{k + 1}.png" for k in range(12)]  # frame1 … frame12: plain sorting puts frame10 second
    assert sorted(names)[1] == "frame10.png"
    write_png_folder(tmp_path / "clip", frames[:6], names[:6])
    write_png_folder(tmp_path / "clip", frames[6:], names[6:], mode="RGB")  # colour frames become grey
    (tmp_path / "clip" / "notes.txt").write_text("not a frame")
    (tmp_path / "clip" / ".frame0.png").write_bytes(b"hidden junk")
    result = ingest(tmp_path / "clip")
    assert result.kind == "frames" and result.volume.shape == (24, 20, 12)
    np.testing.assert_allclose(result.volume.array, frames.transpose(2, 1, 0), atol=1)
    assert sorted(["IM10", "IM9", "im2", "IM1"], key=natural_key) == ["IM1", "im2", "IM9", "IM10"]


def test_sixteen_bit_frames_keep_values(tmp_path):
    from PIL import Image

    (tmp_path / "f").mkdir()
    for k in range(3):
        Image.fromarray(np.full((8, 10), 1000 * k + 7, np.uint16)).save(tmp_path / "f" / f"{k}.png")
    volume = read_any(tmp_path / "f")
    assert volume.shape == (10, 8, 3) and list(volume.array[0, 0]) == [7, 1007, 2007]


# ---- crop -----------------------------------------------------------------------------------------------

def test_auto_crop_keeps_sector_drops_border_and_text(clip):
    frames, (y0, y1, x0, x1) = clip
    box = auto_crop_box(frames.transpose(2, 1, 0).astype(np.float32))
    # the whole sector is kept (up to its one-pixel-thin tip and rim, which the opening may drop) ...
    assert box.y0 <= y0 + 1 and box.y1 >= y1 - 1 and box.x0 <= x0 + 1 and box.x1 >= x1 - 1
    # ... and nothing more than the margin: static text (rows < 10), the depth scale (last 8 columns)
    # and the frame counter (bottom right) are outside
    assert box.y0 >= y0 - AUTO_MARGIN and box.y1 <= y1 + AUTO_MARGIN
    assert box.x0 >= x0 - AUTO_MARGIN and box.x1 <= x1 + AUTO_MARGIN
    assert box.y0 >= 10 and box.x1 <= 128 - 8


def test_auto_crop_on_an_encoded_video(tmp_path, clip):
    frames, _ = clip
    expected = auto_crop_box(frames.transpose(2, 1, 0).astype(np.float32))
    result = ingest(write_video(tmp_path / "clip.mp4", frames), crop="auto")
    box = result.crop
    assert max(abs(a - b) for a, b in zip((box.y0, box.y1, box.x0, box.x1),
                                          (expected.y0, expected.y1, expected.x0, expected.x1))) <= 2
    assert result.volume.shape == (box.x1 - box.x0, box.y1 - box.y0, 8)


def test_explicit_crop_moves_origin(geometry3d):
    rng = np.random.default_rng(0)
    volume = Volume(rng.random((30, 20, 4)).astype(np.float32), geometry3d, "v.nii.gz")
    cropped, box = crop_volume(volume, parse_crop("5:15,10:"))
    assert (box.y0, box.y1, box.x0, box.x1) == (5, 15, 10, 30)
    np.testing.assert_array_equal(cropped.array, volume.array[10:30, 5:15])
    before, after = sitk.Image([30, 20, 4], sitk.sitkFloat32), sitk.Image([20, 10, 4], sitk.sitkFloat32)
    volume.geometry.apply(before)
    cropped.geometry.apply(after)
    np.testing.assert_allclose(after.TransformIndexToPhysicalPoint((0, 0, 2)),
                               before.TransformIndexToPhysicalPoint((10, 5, 2)), atol=1e-9)


@pytest.mark.parametrize("spec, message", [
    ("10-20,0:5", "expected 'auto' or 'y0:y1,x0:x1'"), ("0:200,0:10", "rows 0:200 go past the frame's 20 rows"),
    ("0:10,8:10", "columns 8:10 keep fewer than 4"), ("10:5,:", "rows 10:5 keep fewer than 4"),
])
def test_bad_crop(tmp_path, spec, message):
    frames = multiframe_frames(t=3)
    write_png_folder(tmp_path / "f", frames, [f"{k}.png" for k in range(3)])
    with pytest.raises(InputError, match=f"f: --crop .*{message}"):
        ingest(tmp_path / "f", crop=spec)


def test_auto_crop_on_a_still_clip(tmp_path):
    frames = np.repeat(multiframe_frames(t=1), 4, axis=0)
    write_png_folder(tmp_path / "still", frames, [f"{k}.png" for k in range(4)])
    with pytest.raises(InputError, match="still: --crop auto found no moving image region"):
        ingest(tmp_path / "still", crop="auto")


# ---- bad inputs ---------------------------------------------------------------------------------------------

def test_bad_videos(tmp_path, clip):
    frames, _ = clip
    one = write_video(tmp_path / "one.mp4", frames[:1])
    with pytest.raises(InputError, match="one.mp4: not a cine: the video has 1 frame"):
        read_any(one)
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(InputError, match="noise.mp4: not a readable video"):
        read_any(noise)
    data = write_video(tmp_path / "long.mkv", np.concatenate([frames] * 3)).read_bytes()
    (tmp_path / "cut.mkv").write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(InputError, match="cut.mkv: video data is truncated: the header promises about 24 frames"):
        read_any(tmp_path / "cut.mkv")
    mp4 = write_video(tmp_path / "cut.mp4", frames).read_bytes()
    (tmp_path / "cut.mp4").write_bytes(mp4[: len(mp4) // 2])
    with pytest.raises(InputError, match="cut.mp4: not a readable video"):
        read_any(tmp_path / "cut.mp4")


def test_wide_video_refused_before_decoding(tmp_path):
    wide = np.zeros((2, 16, 4112), np.uint8)  # 4112 px > MAX_SIDE
    path = write_video(tmp_path / "wide.avi", wide, codec="mjpeg")
    with pytest.raises(InputError, match="wide.avi: frames of 4112×16 exceed the limit of 4096 px per side"):
        read_any(path)


def png_header_only(path, width, height):
    """A PNG whose header claims ``width×height`` but which holds no pixel data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IEND", b""))


def test_bad_frame_folders(tmp_path):
    frames = multiframe_frames(t=3)
    write_png_folder(tmp_path / "sizes", frames, ["a1.png", "a2.png", "a3.png"])
    write_png_folder(tmp_path / "sizes", frames[:1, :10], ["a4.png"])
    with pytest.raises(InputError, match=r"a4.png: frame is 24×10 px but a1.png is 24×20 px"):
        read_any(tmp_path / "sizes")
    write_png_folder(tmp_path / "broken", frames, ["a1.png", "a2.png", "a3.png"])
    (tmp_path / "broken" / "a2.png").write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(InputError, match="a2.png: not a readable image"):
        read_any(tmp_path / "broken")
    write_png_folder(tmp_path / "cut", frames, ["a1.png", "a2.png"])
    png_header_only(tmp_path / "cut" / "a3.png", 24, 20)
    with pytest.raises(InputError, match="a3.png: image data is truncated or corrupt"):
        read_any(tmp_path / "cut")
    (tmp_path / "huge").mkdir()
    for k in range(2):
        png_header_only(tmp_path / "huge" / f"{k}.png", 50000, 10)
    with pytest.raises(InputError, match="huge: frames of 50000×10 exceed the limit"):
        read_any(tmp_path / "huge")
    write_png_folder(tmp_path / "single", frames[:1], ["only.png"])
    with pytest.raises(InputError, match="single: not a cine: 1 frame"):
        read_any(tmp_path / "single")
    with pytest.raises(InputError, match="only.png: a single image is not a cine"):
        read_any(tmp_path / "single" / "only.png")


def test_nan_volume_is_refused_by_every_path(tmp_path, geometry3d):
    frames = np.ones((8, 8, 3), np.float32)
    frames[1, 1, 1] = np.nan
    path = write_image(tmp_path / "nan.nii.gz", frames, geometry3d)
    with pytest.raises(InputError, match="nan.nii.gz: image contains NaN"):
        read_any(path)
