"""Writing an account's email templates: create (from a built-in's design or as HTML), update,
delete (refused while an email still to go out uses it) and the account's default."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q

from broadcasts.models import Broadcast
from broadcasts.services import live_messages_refreeze
from content.email_templates.builtins import BUILTINS, DEFAULT_KEY
from content.email_templates.designs import Design, design_settings_check
from content.models import EmailTemplate
from convertkit.models import Account

# Where a template written as HTML starts: the content, and the law's footer (both variables).
HTML_STARTER = """<style>
  .page { background-color: #f4f4f5; }
  .card { background-color: #ffffff; padding: 32px; font-family: Helvetica, Arial, sans-serif; color: #1f2328; }
  .small { font-size: 12px; color: #666666; text-align: center; padding: 16px; }
</style>
<table class="page" role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" bgcolor="#f4f4f5">
  <tr><td align="center">
    <table role="presentation" width="600" cellpadding="0" cellspacing="0" border="0">
      <tr><td class="card" bgcolor="#ffffff">
        {{ message_content }}
      </td></tr>
      <tr><td class="small">
        {{ account.name }}, {{ account.postal_address }}<br>
        <a href="{{ unsubscribe_url }}">Unsubscribe</a>
      </td></tr>
    </table>
  </td></tr>
</table>
"""
BLANK_HTML = "html"


class EmailTemplateInUse(Exception):
    """The template is the design of emails still to go out; the message says which, for the
    creator."""


def email_template_create(*, account: Account, name: str, start: str) -> EmailTemplate:
    """A new template named `name`, starting from a built-in's design (`start` its key) or, for
    BLANK_HTML, as HTML from a starter that has every required part. ValueError for another
    `start`."""
    if start == BLANK_HTML:
        return EmailTemplate.objects.create(
            account=account, name=name, mode=EmailTemplate.Mode.HTML, html=HTML_STARTER
        )
    if start not in BUILTINS:
        raise ValueError(f"No built-in template {start!r}.")
    settings = design_settings_check({}, base=BUILTINS[start].design)
    return EmailTemplate.objects.create(account=account, name=name, settings=settings)


def email_template_update(
    *, template: EmailTemplate, name: str, settings: dict | None = None, html: str | None = None
) -> EmailTemplate:
    """Saves the template's name and its settings (a design template) or HTML (an HTML one);
    ValidationError, nothing saved, when they are not ones a layout can take. Sent broadcasts
    keep the design they were sent with; live sequence and automation emails take the new one
    from their next copy (frozen again here)."""
    if template.mode == EmailTemplate.Mode.HTML:
        html = template.html if html is None else html
        try:
            Design(custom_html=html)
        except ValueError as invalid:
            raise ValidationError({"html": str(invalid).removeprefix("custom_html: ")}) from None
        template.html = html
    else:
        template.settings = design_settings_check(settings or template.settings)
    template.name = name
    with transaction.atomic():
        template.save(update_fields=["name", "settings", "html", "updated_at"])
        live_messages_refreeze(
            account_id=template.account_id,
            affected=lambda message: message.email_template == template.key,
        )
    return template


def _emails_using(template: EmailTemplate):
    """The emails still to go out that use the template: draft and scheduled broadcasts, and
    the messages of sequence emails and automation steps not deleted (sent again and again)."""
    return Broadcast.objects.filter(
        account_id=template.account_id, email_template=template.key
    ).filter(
        Q(kind=Broadcast.Kind.BROADCAST, state__in=Broadcast.EDITABLE_STATES)
        | Q(kind=Broadcast.Kind.SEQUENCE_EMAIL, sequence_email__deleted_at__isnull=True)
        | Q(kind=Broadcast.Kind.AUTOMATION_EMAIL, automation_node__deleted_at__isnull=True)
    )


def email_template_delete(*, template: EmailTemplate) -> None:
    """Deletes the template, unless emails still to go out use it (EmailTemplateInUse: choose
    another template for them first). Sent emails hold their HTML; their key is set to Classic,
    as the account's default is when it was this template."""
    with transaction.atomic():
        EmailTemplate.objects.select_for_update().filter(pk=template.pk).first()
        using = list(_emails_using(template).values_list("kind", flat=True))
        if using:
            counts = {kind: using.count(kind) for kind in dict.fromkeys(using)}
            names = {
                Broadcast.Kind.BROADCAST: (
                    "draft or scheduled broadcast",
                    "draft or scheduled broadcasts",
                ),
                Broadcast.Kind.SEQUENCE_EMAIL: ("sequence email", "sequence emails"),
                Broadcast.Kind.AUTOMATION_EMAIL: ("automation email", "automation emails"),
            }
            listed = ", ".join(
                f"{count} {names[kind][count != 1]}" for kind, count in counts.items()
            )
            raise EmailTemplateInUse(
                f"“{template.name}” is used by {listed}: choose another template for them first."
            )
        Broadcast.objects.filter(
            account_id=template.account_id, email_template=template.key
        ).update(email_template=DEFAULT_KEY)
        Account.objects.filter(pk=template.account_id, default_email_template=template.key).update(
            default_email_template=DEFAULT_KEY
        )
        template.delete()


def email_template_default_set(*, account: Account, key: str) -> None:
    """Makes the design `key` (a built-in's, or one of the account's templates) the one new
    emails start with; ValueError for a key that names none of them."""
    if key not in BUILTINS and not (
        key.isdigit() and EmailTemplate.objects.filter(account=account, pk=int(key)).exists()
    ):
        raise ValueError(f"No template {key!r} in this account.")
    Account.objects.filter(pk=account.pk).update(default_email_template=key)
    account.default_email_template = key
