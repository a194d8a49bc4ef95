"""Formatting for the report pages."""

from __future__ import annotations

from django import template

from tracking.reports import rate_label

register = template.Library()
register.filter("percent", rate_label)
