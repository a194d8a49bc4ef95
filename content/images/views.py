"""The image library page, uploads (a plain form or fetch/XHR), the JSON list the editors pick
from, deletion, and the public files of the filesystem storage."""

from __future__ import annotations

import mimetypes
import re

from django.conf import settings
from django.contrib import messages
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_POST

from content.images import services
from content.images.processing import ImageRefused, size_text, too_large_message
from content.images.services import image_urls, images_storage
from content.models import Image
from convertkit.paging import keyset_page, page_cursor
from convertkit.tenancy import account_required, get_for_account
from convertkit.uploads import SizeLimitedUploadHandler, declared_too_large

LIBRARY_PAGE_SIZE = 48
JSON_PAGE_SIZE = 30
# The names image_upload writes: images/<random key>/<label>.<extension>.
_FILE_NAME = re.compile(r"images/[A-Za-z0-9_-]{16,64}/(original|thumb|w[0-9]{1,5})\.(jpg|png|gif)")


def _wants_json(request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _image_json(image: Image) -> dict:
    urls = image_urls(image)
    return {
        "id": image.id,
        "url": urls.email,
        "retina_url": urls.retina,
        "thumb_url": urls.thumb,
        "width": urls.email_width,
        "height": urls.email_height,
        "name": image.name,
    }


def _library(request, *, refused: str = "", status: int = 200):
    page = keyset_page(
        Image.objects.filter(account=request.account),
        after=page_cursor(request, "after"),
        before=page_cursor(request, "before"),
        page_size=LIBRARY_PAGE_SIZE,
    )
    items = [(image, image_urls(image)) for image in page.items]
    context = {
        "page": page.with_items(items),
        "refused": refused,
        "max_size": size_text(settings.IMAGE_MAX_BYTES),
    }
    return render(request, "content/images/image_library.html", context, status=status)


@require_GET
@account_required
def image_library(request):
    return _library(request)


@require_GET
@account_required
def image_library_json(request):
    """The account's images, newest first, JSON_PAGE_SIZE at a time: ?before=<id> for the next
    page (its id is in "next_before", null on the last page)."""
    images = Image.objects.filter(account=request.account).order_by("-id")
    before = page_cursor(request, "before")
    if before is not None:
        images = images.filter(id__lt=before)
    page = list(images[: JSON_PAGE_SIZE + 1])
    more = len(page) > JSON_PAGE_SIZE
    page = page[:JSON_PAGE_SIZE]
    return JsonResponse(
        {
            "images": [_image_json(image) for image in page],
            "next_before": page[-1].id if more else None,
        }
    )


def _refused(request, message: str, status: int):
    if _wants_json(request):
        return JsonResponse({"error": message}, status=status)
    return _library(request, refused=message, status=status)


@csrf_exempt
@require_POST
@account_required
def image_upload(request):
    """POST multipart `file`: 201 JSON {"id", "url", "width", "height", ...} for fetch/XHR
    (Accept: application/json), else a redirect to the library; a refusal is a 4xx with
    {"error": message}, or the library page with the message. The size limit is enforced from
    the declared length, before reading the body, then while it streams in."""
    max_bytes = settings.IMAGE_MAX_BYTES
    if declared_too_large(request, max_bytes):
        return _refused(request, too_large_message(max_bytes), 413)
    handler = SizeLimitedUploadHandler(request, max_bytes)
    # Before anything reads request.POST, hence CSRF is checked after it.
    request.upload_handlers.insert(0, handler)
    return _upload(request, handler, max_bytes)


@csrf_protect
def _upload(request, handler: SizeLimitedUploadHandler, max_bytes: int):
    file = request.FILES.get("file")
    if handler.exceeded:
        return _refused(request, too_large_message(max_bytes), 413)
    if file is None:
        return _refused(request, "Choose an image file to upload.", 400)
    try:
        image = services.image_upload(account=request.account, file=file)
    except ImageRefused as refused:
        return _refused(request, refused.message, 400)
    if _wants_json(request):
        return JsonResponse(_image_json(image), status=201)
    messages.success(request, f"“{image.name}” was added to your images.")
    return redirect("image_library")


@account_required
def image_delete(request, image_id: int):
    image = get_for_account(request, Image, pk=image_id)
    if request.method == "POST":
        services.image_delete(image=image)
        messages.success(request, f"“{image.name}” was deleted.")
        return redirect("image_library")
    return render(
        request,
        "subscribers/confirm.html",
        {
            "title": f"Delete {image.name}?",
            "explanation": "The image and its resized copies are deleted for good. Emails "
            "already sent, and drafts, that show it will show a broken image.",
            "button": "Delete for good",
            "danger": True,
            "cancel_url": reverse("image_library"),
        },
    )


@require_GET
def image_file(request, name: str):
    """A file of the images storage, public (it goes into emails): only names that
    image_upload writes, with the type of their extension and a year of caching (a name is
    never reused). Where images live in a bucket, its URLs point there instead."""
    storage = images_storage()
    if not _FILE_NAME.fullmatch(name) or not storage.exists(name):
        raise Http404
    response = FileResponse(
        storage.open(name, "rb"), content_type=mimetypes.guess_type(name)[0] or "image/jpeg"
    )
    response["Cache-Control"] = settings.IMAGE_CACHE_CONTROL
    # Served from the app's own host: never run as a page, whatever a file might hold.
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response
