"""The creator's report pages: a broadcast's report with its people lists (a sequence email's
are the same pages, reached from its sequence: message_report, message_report_people), and the
older part of a subscriber's activity timeline (its newest part is on the subscriber page)."""

from __future__ import annotations

from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse

from broadcasts.models import Broadcast
from convertkit.paging import page_cursor
from convertkit.tenancy import account_required, get_for_account
from subscribers.models import Subscriber
from tracking import reports
from tracking.models import Link

PEOPLE_TITLES = {
    "opened": "Who opened",
    "clicked": "Who clicked",
    "bounced": "Who bounced",
    "complained": "Who marked it as spam",
    "unsubscribed": "Who unsubscribed",
}


def _sent_broadcast(request, broadcast_id: int) -> Broadcast | None:
    """The account's broadcast (else 404; a sequence email's message is not one), or None
    while it is a draft (nothing to report)."""
    broadcast = get_for_account(
        request,
        Broadcast.objects.broadcasts().select_related("account"),
        pk=broadcast_id,
    )
    return None if broadcast.is_editable else broadcast


def message_report(
    request,
    message: Broadcast,
    *,
    report_url: str,
    back_url: str,
    back_label: str,
    status: tuple[str, str],
    resend: bool = False,
):
    """The report page of a message that went out: a broadcast's, or a sequence email's (its
    message is a Broadcast row, tracked alike). `report_url` is this page's URL, under which
    the people lists are (`<report_url><kind>/`); `status` the badge's (class, label)."""
    figures = reports.broadcast_figures(broadcast=message)
    return render(
        request,
        "tracking/broadcast_report.html",
        {
            "broadcast": message,
            "report_url": report_url,
            "back_url": back_url,
            "back_label": back_label,
            "status_class": status[0],
            "status_label": status[1],
            "resend": resend,
            "figures": figures,
            "chart": reports.broadcast_activity_chart(broadcast=message),
            "links": reports.broadcast_links(broadcast=message),
            "people_counts": [
                ("opened", "Opened", figures.rates.unique_opens),
                ("clicked", "Clicked", figures.rates.unique_clicks),
                ("bounced", "Bounced", figures.bounces),
                ("complained", "Marked as spam", figures.complaints),
                ("unsubscribed", "Unsubscribed", figures.unsubscribes),
            ],
        },
    )


def message_report_people(request, message: Broadcast, kind: str, *, report_url: str):
    """Who opened, clicked (?link= one link), bounced ... the message, latest first."""
    if kind not in reports.PEOPLE_KINDS:
        raise Http404
    link = None
    if kind == "clicked" and "link" in request.GET:
        link_id = page_cursor(request, "link")
        link = Link.objects.filter(broadcast=message, pk=link_id).first() if link_id else None
        if link is None:
            raise Http404
    page = reports.broadcast_people(
        broadcast=message,
        kind=reports.PEOPLE_KINDS[kind],
        link_id=link.id if link else 0,
        after=page_cursor(request, "after"),
        before=page_cursor(request, "before"),
    )
    return render(
        request,
        "tracking/broadcast_people.html",
        {
            "broadcast": message,
            "report_url": report_url,
            "kind": kind,
            "title": PEOPLE_TITLES[kind],
            "kinds": list(PEOPLE_TITLES.items()),
            "link": link,
            "page": page,
        },
    )


@account_required
def broadcast_report(request, broadcast_id: int):
    broadcast = _sent_broadcast(request, broadcast_id)
    if broadcast is None:
        return redirect("broadcast_edit", broadcast_id)
    return message_report(
        request,
        broadcast,
        report_url=reverse("broadcast_report", args=[broadcast.id]),
        back_url=reverse("broadcast_progress", args=[broadcast.id]),
        back_label="Sending progress",
        status=(broadcast.state, broadcast.get_state_display()),
        resend=True,
    )


@account_required
def broadcast_report_people(request, broadcast_id: int, kind: str):
    broadcast = _sent_broadcast(request, broadcast_id)
    if broadcast is None:
        return redirect("broadcast_edit", broadcast_id)
    return message_report_people(
        request, broadcast, kind, report_url=reverse("broadcast_report", args=[broadcast.id])
    )


@account_required
def subscriber_activity(request, subscriber_id: int):
    """The subscriber's activity timeline from ?before= on (the "More activity" link)."""
    subscriber = get_for_account(request, Subscriber, pk=subscriber_id)
    before = reports.timeline_cursor(request.GET.get("before", ""))
    return render(
        request,
        "tracking/subscriber_activity.html",
        {
            "subscriber": subscriber,
            "timeline": reports.subscriber_timeline(subscriber=subscriber, before=before),
            "paged": before is not None,
        },
    )
