from __future__ import annotations


def test_health_reports_database_and_redis_ok(client, db):
    response = client.get("/health/")
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "redis": "ok"}
