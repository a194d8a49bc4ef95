"""The creator's report pages: a broadcast's report with its people lists, and the older part of
a subscriber's activity timeline (its newest part is on the subscriber page)."""

from __future__ import annotations

from django.http import Http404
from django.shortcuts import redirect, render

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
    """The account's broadcast (else 404), or None while it is a draft (nothing to report)."""
    broadcast = get_for_account(
        request, Broadcast.objects.select_related("account"), pk=broadcast_id
    )
    return None if broadcast.is_editable else broadcast


@account_required
def broadcast_report(request, broadcast_id: int):
    broadcast = _sent_broadcast(request, broadcast_id)
    if broadcast is None:
        return redirect("broadcast_edit", broadcast_id)
    figures = reports.broadcast_figures(broadcast=broadcast)
    return render(
        request,
        "tracking/broadcast_report.html",
        {
            "broadcast": broadcast,
            "figures": figures,
            "chart": reports.broadcast_activity_chart(broadcast=broadcast),
            "links": reports.broadcast_links(broadcast=broadcast),
            "people_counts": [
                ("opened", "Opened", figures.rates.unique_opens),
                ("clicked", "Clicked", figures.rates.unique_clicks),
                ("bounced", "Bounced", figures.bounces),
                ("complained", "Marked as spam", figures.complaints),
                ("unsubscribed", "Unsubscribed", figures.unsubscribes),
            ],
        },
    )


@account_required
def broadcast_report_people(request, broadcast_id: int, kind: str):
    """Who opened, clicked (?link= one link), bounced ... the broadcast, latest first."""
    if kind not in reports.PEOPLE_KINDS:
        raise Http404
    broadcast = _sent_broadcast(request, broadcast_id)
    if broadcast is None:
        return redirect("broadcast_edit", broadcast_id)
    link = None
    if kind == "clicked" and "link" in request.GET:
        link_id = page_cursor(request, "link")
        link = Link.objects.filter(broadcast=broadcast, pk=link_id).first() if link_id else None
        if link is None:
            raise Http404
    page = reports.broadcast_people(
        broadcast=broadcast,
        kind=reports.PEOPLE_KINDS[kind],
        link_id=link.id if link else 0,
        after=page_cursor(request, "after"),
        before=page_cursor(request, "before"),
    )
    return render(
        request,
        "tracking/broadcast_people.html",
        {
            "broadcast": broadcast,
            "kind": kind,
            "title": PEOPLE_TITLES[kind],
            "kinds": list(PEOPLE_TITLES.items()),
            "link": link,
            "page": page,
        },
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
