"""Uploads refused as soon as they pass a size limit: by their declared length before a byte of
the body is read, else while they stream in."""

from __future__ import annotations

from django.core.files.uploadhandler import FileUploadHandler, StopUpload

# Room for the multipart envelope around the file when comparing Content-Length to the limit.
ENVELOPE_BYTES = 64 * 1024


def declared_too_large(request, max_bytes: int) -> bool:
    """The request's Content-Length says more than a file of `max_bytes` (or says nothing)."""
    declared = request.META.get("CONTENT_LENGTH") or "0"
    return not declared.isdigit() or int(declared) > max_bytes + ENVELOPE_BYTES


class SizeLimitedUploadHandler(FileUploadHandler):
    """Stops reading an upload as soon as it passes `limit`: nothing bigger is kept. Insert it
    first in request.upload_handlers before anything reads request.POST."""

    def __init__(self, request, limit: int):
        super().__init__(request)
        self.limit = limit
        self.received = 0
        self.exceeded = False

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > self.limit:
            self.exceeded = True
            # Read (and drop) the rest of the request, so the browser gets our message.
            raise StopUpload(connection_reset=False)
        return raw_data

    def file_complete(self, file_size):
        return None
