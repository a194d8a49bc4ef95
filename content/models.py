"""What creators put into their emails besides the words: the image library, email templates
(the design around an email's content) and snippets (named blocks reused across emails)."""

from __future__ import annotations

from django.db import models  # noqa: F401
