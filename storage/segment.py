"""The names that storage/segment.py used to hold, re-exported from where they live now.

The disk store's pieces (the format itself is described at the top of storage/disk.py):
  storage/records.py   headers, record frames and encoders, the header check, the Scanner
  storage/writer.py    the group commit's Batch, the two append logs and the Writer thread
  storage/recovery.py  reading index.log and defs.log, rebuilding the table from segments
  storage/refs.py      one queue's message references in RAM
New code imports from those modules.
"""

from __future__ import annotations

from .records import (
    BASE,
    DEFS_MAGIC,
    END,
    FILE_HEADER,
    FRAME,
    FRAME_SIZE,
    HEADER_CHECKED,
    HEADER_SIZE,
    INDEX_MAGIC,
    K_BASE,
    K_DEF,
    K_DEF_V1,
    K_DELETE_QUEUE,
    K_DELIVERED,
    K_END,
    K_LIVE,
    K_MESSAGE,
    K_REMOVE,
    K_UNDEF,
    K_UNDEF_V1,
    KIND_U16,
    MSG_HEAD,
    RECORD_MAGIC,
    SEGMENT_MAGIC,
    U16,
    U32,
    U64,
    VERSION,
    Scanner,
    base_record,
    bytes_text,
    check_header,
    def_record,
    end_record,
    file_header,
    frame,
    ids_bytes,
    ids_from,
    ids_record,
    key_record,
    message_head,
    name_field,
    split_key,
    text_bytes,
    undef_record,
)
from .recovery import DEF_KINDS, INDEX_KINDS, IndexState, LogRead, QueueIndex, read_log
from .refs import DELIVERED, REMOVED, QueueRefs
from .writer import Batch, LogFile, Writer, fsync_dir, pwrite_all

__all__ = [
    "BASE", "DEFS_MAGIC", "DEF_KINDS", "DELIVERED", "END", "FILE_HEADER", "FRAME", "FRAME_SIZE",
    "HEADER_CHECKED", "HEADER_SIZE", "INDEX_KINDS", "INDEX_MAGIC", "KIND_U16", "K_BASE", "K_DEF",
    "K_DEF_V1", "K_DELETE_QUEUE", "K_DELIVERED", "K_END", "K_LIVE", "K_MESSAGE", "K_REMOVE",
    "K_UNDEF", "K_UNDEF_V1", "MSG_HEAD", "RECORD_MAGIC", "REMOVED", "SEGMENT_MAGIC", "U16", "U32",
    "U64", "VERSION", "Batch", "IndexState", "LogFile", "LogRead", "QueueIndex", "QueueRefs",
    "Scanner", "Writer", "base_record", "bytes_text", "check_header", "def_record", "end_record",
    "file_header", "frame", "fsync_dir", "ids_bytes", "ids_from", "ids_record", "key_record",
    "message_head", "name_field", "pwrite_all", "read_log", "split_key", "text_bytes",
    "undef_record",
]
