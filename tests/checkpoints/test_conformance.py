"""LangGraph's own conformance suite, run against DjangoSaver."""

from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES, BASE_CAPABILITIES

from checkpoints_app.saver import DjangoSaver

EXTENDED = {"delete_for_runs", "copy_thread", "prune"}


@checkpointer_test(name="DjangoSaver")
async def django_saver():
    yield DjangoSaver()


async def test_it_passes_every_capability_of_the_conformance_suite(threaded_saver):
    report = await validate(django_saver)

    failures = {name: result.failures for name, result in report.results.items() if result.failures}
    assert failures == {}
    assert {cap.value for cap in BASE_CAPABILITIES} | EXTENDED == {
        cap.value for cap in ALL_CAPABILITIES
    }
    for capability in ALL_CAPABILITIES:
        result = report.results[capability.value]
        assert result.detected, capability.value
        assert result.passed is True, capability.value
        assert result.tests_failed == 0
        assert result.tests_passed > 0
    assert report.conformance_level() == "FULL"
