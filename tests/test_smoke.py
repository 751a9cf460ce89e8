from factories import make_deal, make_pipeline, make_user


def test_a_seller_creates_a_deal_in_the_first_working_stage(session):
    pipeline = make_pipeline(session)
    ana = make_user(session, "ana")
    deal = make_deal(session, ana)
    assert deal.owner_id == ana.user_id and deal.pipeline_id == pipeline.id
