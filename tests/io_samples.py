"""Small generated inputs for the I/O tests: an MP4, a NIfTI volume, a DICOM series, a zarr array, JPEG frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np

AFFINE = np.array([[0.0, -0.7, 0.0, 12.0],
                   [0.9, 0.0, 0.0, -40.0],
                   [0.0, 0.0, 2.5, 7.5],
                   [0.0, 0.0, 0.0, 1.0]])
"""A non-identity NIfTI affine: axes swapped and flipped, anisotropic voxels, an offset."""


def video_frame(i: int, h: int = 48, w: int = 64) -> np.ndarray:
    """Frame ``i`` of the test video: a colour ramp and moving lines, distinct for every frame."""
    a = np.zeros((h, w, 3), np.uint8)
    a[..., 0] = (i * 6) % 256
    a[(i * 2) % h, :, 1] = 255
    a[:, (i * 3) % w, 2] = 255
    a[h // 3:h // 3 + 12, (i % 40):(i % 40) + 16] = 200  # a moving bright block (an "object")
    return a


def make_video(path: Path, n: int = 40, h: int = 48, w: int = 64, *, codec: str = "h264", gop: int = 12) -> Path:
    """Encode ``n`` frames with PyAV (B-frames and a keyframe every ``gop`` frames, so seeking matters)."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.gop_size = gop
        if codec == "h264":
            stream.options = {"bf": "2", "preset": "ultrafast"}
        for i in range(n):
            for packet in stream.encode(av.VideoFrame.from_ndarray(video_frame(i, h, w), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def ct_volume(shape=(40, 32, 6)) -> np.ndarray:
    """An int16 volume ``(X, Y, Z)`` in Hounsfield-like units: air around a body with a bright 'bone'."""
    x, y = np.mgrid[:shape[0], :shape[1]]
    body = ((x - shape[0] / 2) ** 2 / (shape[0] / 3) ** 2 + (y - shape[1] / 2) ** 2 / (shape[1] / 3) ** 2) < 1
    vol = np.full(shape, -1000, np.int16)
    for z in range(shape[2]):
        vol[..., z][body] = 40 + 3 * z
        vol[shape[0] // 2 - 2:shape[0] // 2 + 2, shape[1] // 2 - 2:shape[1] // 2 + 2, z] = 900
    return vol


def make_nifti(path: Path, vol: np.ndarray | None = None) -> Path:
    """A ``.nii.gz`` with :data:`AFFINE`."""
    import nibabel as nib

    nib.save(nib.Nifti1Image(ct_volume() if vol is None else vol, AFFINE), str(path))
    return path


def make_dicom_series(folder: Path, n: int = 5, rows: int = 24, cols: int = 20, *, shuffle_names: bool = True) -> \
        tuple[Path, np.ndarray]:
    """CT slices written with pydicom (stored value = HU + 1024, intercept -1024); returns the folder and HU."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series, study = generate_uid(), generate_uid()
    hu = np.stack([np.full((rows, cols), -1000 + 200 * k, np.int16) for k in range(n)])
    hu[:, 5:10, 4:8] = 300
    order = np.random.default_rng(0).permutation(n) if shuffle_names else np.arange(n)
    for k in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = "CT", series, study
        ds.Rows, ds.Columns = rows, cols
        ds.PixelSpacing, ds.SliceThickness = [0.8, 0.6], 3.0
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-10.0, -20.0, 100.0 + 3.0 * k]
        ds.InstanceNumber = int(n - k)  # reversed on purpose: the position decides the order
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = (hu[k].astype(np.int32) + 1024).astype(np.uint16).tobytes()
        ds.save_as(str(folder / f"img{order[k]:03d}.dcm"), enforce_file_format=True)
    return folder, hu


def make_zarr(path: Path, shape=(6, 30, 40)) -> tuple[Path, np.ndarray]:
    """A uint16 zarr array, one chunk per slice."""
    import zarr

    data = (np.arange(np.prod(shape)).reshape(shape) % 4000).astype(np.uint16)
    z = zarr.open(str(path), mode="w", shape=shape, dtype="uint16", chunks=(1, *shape[1:]))
    z[:] = data
    return path, data


def make_jpeg_folder(folder: Path, n: int = 12) -> Path:
    """Frames ``1.jpg`` … ``n.jpg`` (natural order differs from name order past 9)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, n + 1):
        Image.fromarray(video_frame(i)).save(folder / f"{i}.jpg", quality=95)
    return folder
