from tests.entitlements.conftest import entitled_viewer


async def test_viewer_with_paid_subscription_is_entitled(api, admin, settings, publish_movie):
    movie = await publish_movie()
    viewer, user, plan, sub = await entitled_viewer(api, admin, settings, [movie])
    decision = await admin.ok("GET", f"/api/entitlements/check?user_id={user['id']}&movie_id={movie}")
    assert decision == {"allowed": True, "reason": "ok", "max_height": 1080}
    mine = await viewer.ok("GET", "/api/me/movies")
    assert [m["id"] for m in mine["items"]] == [str(movie)]
