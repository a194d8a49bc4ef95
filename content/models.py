"""What creators put into their emails besides the words: the image library, email templates
(the design around an email's content) and snippets (named blocks reused across emails)."""

from __future__ import annotations

from django.db import models

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
