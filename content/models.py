"""What creators put into their emails besides the words: the image library, email templates
(the design around an email's content) and snippets (named blocks reused across emails)."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from convertkit.models import Account


class Snippet(models.Model):
    """A reusable piece of email content: a visual document (broadcasts/rendering/document.py)
    that an email names by `key`, as a snippet block or as `{{ snippet.key }}`, and that is
    expanded from its current body whenever the email is rendered. The key comes from the name
    when the snippet is made and never changes, so emails keep finding it."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, db_index=False)
    name = models.CharField(max_length=100)
    key = models.SlugField(max_length=100)
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "key"], name="snippet_account_key"),
        ]

    def __str__(self) -> str:
        return self.name


_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/gif": "gif"}


class Image(models.Model):
    """An image of the account's library: its files live in the "images" storage under
    images/<key>/ (original, one copy per width in `widths`, thumb), all in `content_type`.

    `key` is random and unguessable: the files' public URLs need no login and reveal nothing
    of the account or of its other images.
    """

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="images")
    # The file name as uploaded, for the library page.
    name = models.CharField(max_length=255)
    # Of every stored file: image/jpeg, image/png or image/gif (WebP is stored as one of these).
    content_type = models.CharField(max_length=20)
    # The stored original (turned upright, metadata stripped).
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    byte_size = models.PositiveIntegerField()
    key = models.CharField(max_length=64, unique=True)
    # The widths of the resized copies stored, ascending; only those narrower than the original.
    widths = ArrayField(models.PositiveIntegerField(), default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["account", "-id"], name="content_image_account_newest")]

    def __str__(self) -> str:
        return self.name

    @property
    def extension(self) -> str:
        return _EXTENSIONS[self.content_type]

    def file_name(self, label: str) -> str:
        """The storage name of one of its files: "original", "thumb" or "w<width>"."""
        return f"images/{self.key}/{label}.{self.extension}"

    def file_names(self) -> list[str]:
        labels = ["original", "thumb", *(f"w{width}" for width in self.widths)]
        return [self.file_name(label) for label in labels]

    def height_at(self, width: int) -> int:
        """The height of its copy `width` pixels wide."""
        return max(1, round(self.height * width / self.width))


class EmailTemplate(models.Model):
    """An account's own email template (content.email_templates): design settings over a
    built-in's, or the creator's own HTML around {{ message_content }}. Emails name it by
    its id (content.email_templates.designs.design_key)."""

    class Mode(models.TextChoices):
        DESIGN = "design", "Design settings"
        HTML = "html", "HTML"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, db_index=False)
    name = models.CharField(max_length=120)
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.DESIGN)
    # The Design's settings (designs.SETTINGS), checked when saved and again when read.
    settings = models.JSONField(default=dict, blank=True)
    html = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["account", "name"], name="email_template_account")]
        constraints = [
            models.CheckConstraint(
                condition=Q(mode__in=["design", "html"]), name="email_template_mode_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def key(self) -> str:
        return str(self.pk)
