"""Reading images and writing labels: frames, TIFF, zarr, video, NIfTI and DICOM (Qt- and napari-free).

The command line and the napari readers both open data through
:func:`open_images`, which returns an :class:`ImageSource`: a lazy stack
(slices read or decoded when indexed), slice names, spacing and affine of
volumes, and the one contrast rule of the stack.  :func:`write_labels`
writes label stacks back in the input's form (TIFF stack, folder of PNGs,
NIfTI with the source's affine).
"""

from .contrast import WINDOWS, contrast_record, parse_window, stack_limits, window_limits
from .frames import FRAME_SUFFIXES, FolderStack, list_frames, read_frame
from .opening import INPUTS, label_plane, open_images, open_labels, read_label_plane, with_contrast
from .source import ImageSource, InputError, natural_key, plane_kind
from .video import VIDEO_SUFFIXES, VideoFrames, frame_names
from .writers import check_output, default_form, output_form, write_labels, write_plane

__all__ = [
    "ImageSource", "InputError", "open_images", "open_labels", "read_label_plane", "label_plane", "read_frame",
    "list_frames", "FolderStack", "VideoFrames", "frame_names", "natural_key", "plane_kind", "with_contrast",
    "WINDOWS", "parse_window", "window_limits", "stack_limits", "contrast_record", "write_labels", "write_plane",
    "check_output", "output_form", "default_form", "FRAME_SUFFIXES", "VIDEO_SUFFIXES", "INPUTS",
]
