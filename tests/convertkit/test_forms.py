"""The shared form parts: the time zone select written as one string."""

from __future__ import annotations

from django import forms

from convertkit.forms import TIME_ZONE_CHOICES, TimeZoneSelect


def test_the_time_zone_select_offers_every_zone_and_marks_the_saved_one_as_django_would():
    fast = TimeZoneSelect().render("time_zone", "Europe/Paris", attrs={"id": "id_time_zone"})
    django = forms.Select(choices=TIME_ZONE_CHOICES).render(
        "time_zone", "Europe/Paris", attrs={"id": "id_time_zone"}
    )

    def options(html: str) -> list[str]:
        return [part.split(">")[0] for part in html.split("<option")[1:]]

    assert options(fast) == [option.replace('="selected"', "") for option in options(django)]
    assert ' value="Europe/Paris" selected' in fast and fast.count(" selected") == 1
    assert fast.startswith('<select id="id_time_zone" name="time_zone">')


def test_a_value_that_is_no_zone_selects_nothing_and_is_escaped_nowhere_into_the_page():
    html = TimeZoneSelect().render("time_zone", '"><script>alert(1)</script>')
    assert "<script>" not in html and " selected" not in html
    assert html.count("<option") == len(TIME_ZONE_CHOICES)
