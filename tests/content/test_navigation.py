"""Templates, snippets and images share one entry of the main navigation, "Content", and link
to each other by a section nav that marks the page the creator is on."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url_name", "current"),
    [
        ("email_template_list", "Templates"),
        ("snippet_list", "Snippets"),
        ("image_library", "Images"),
    ],
)
def test_each_content_page_is_under_content_and_marks_itself(alice_client, url_name, current):
    body = alice_client.get(reverse(url_name)).content.decode()

    nav = body[body.index('id="main-nav"') : body.index("</nav>")]
    assert 'aria-current="page">Content<' in nav
    assert not re.search(r">(Templates|Snippets|Images)<", nav)
    section = body[body.index('aria-label="Content"') :]
    section = section[: section.index("</nav>")]
    assert re.findall(r">([A-Z][a-z]+)</a>", section) == ["Templates", "Snippets", "Images"]
    assert re.findall(r'aria-current="page">([A-Z][a-z]+)<', section) == [current]
