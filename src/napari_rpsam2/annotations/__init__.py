"""The work folder of an image (labels, prompts, provenance; crash-safe) and its exports.

Qt- and napari-free.  See ``docs/workfolder.md`` for the folder's files.
"""

from .export import coco_json, prompt_rows, write_coco, write_labels, write_prompts_csv
from .folder import Restored, WorkFolder, WorkFolderError, image_signature, mask_digest
from .journal import append_event, read_events

__all__ = ["WorkFolder", "WorkFolderError", "Restored", "image_signature", "mask_digest", "append_event",
           "read_events", "write_labels", "write_prompts_csv", "prompt_rows", "coco_json", "write_coco"]
