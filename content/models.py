"""What creators put into their emails besides the words: the image library, email templates
(the design around an email's content) and snippets (named blocks reused across emails)."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from convertkit.models import Account


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
