"""The fake LLMTune's pure parts: the job lifecycle, the switches, retries, inference answers."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from service.cli import build_parser, main
from service.commands.fake_llmtune import fake_config
from service.fake_llmtune.inference import batch_answer, completion
from service.fake_llmtune.jobs import Job, Stage, advance, is_due, job_view, w3_body
from service.fake_llmtune.sender import retry_delay
from service.fake_llmtune.switches import (
    SwitchError,
    Switches,
    apply_patch,
    error_body,
    plan_sends,
    switches_json,
    take_failure,
)

T0 = datetime(2025, 11, 8, 14, 22, 31, 250000, tzinfo=UTC)
MODEL = "meta-llama/Llama-3.3-70B-Instruct"


def make_job(stage: Stage = "pending", dataset: str = "s3://bucket/data.jsonl") -> Job:
    """A job of MODEL on `dataset` at `stage`."""
    return Job(job_id="ft-1", base_model=MODEL, dataset=dataset, created_at=T0, stage=stage)


class TestLifecycle:
    @pytest.mark.parametrize(
        ("stage", "dataset", "event", "after"),
        [
            pytest.param("pending", "s3://ok", "training.started", "training", id="start"),
            pytest.param("training", "s3://ok", "training.completed", "completed", id="complete"),
            pytest.param("completed", "s3://ok", "model.deployed", "deployed", id="deploy"),
            pytest.param("pending", "s3://fail", "training.started", "training", id="fail-start"),
            pytest.param("training", "s3://FAIL.jsonl", "training.failed", "failed", id="fail"),
        ],
    )
    def test_each_step(self, stage: Stage, dataset: str, event: str, after: Stage) -> None:
        """Each stage moves to the next one and names the event announcing it."""
        step = advance(make_job(stage, dataset), T0, 1.0)
        assert step is not None
        assert (step.event, step.job.stage) == (event, after)
        assert step.data["jobId"] == "ft-1"
        assert step.data["modelName"] == MODEL

    @pytest.mark.parametrize("stage", ["deployed", "failed"])
    def test_finished_jobs_stay(self, stage: Stage) -> None:
        """A deployed or failed job takes no further step."""
        assert advance(make_job(stage), T0, 1.0) is None

    def test_completed_failing_job_is_finished(self) -> None:
        """A failing job never deploys (its completed stage cannot be reached anyway)."""
        assert make_job("completed", "fail").finished

    def test_next_step_time(self) -> None:
        """A step schedules the next one `step_seconds` later; the last step schedules none."""
        step = advance(make_job("pending"), T0, 2.0)
        assert step is not None
        assert step.job.next_at == T0 + timedelta(seconds=2)
        last = advance(make_job("completed"), T0, 2.0)
        assert last is not None
        assert last.job.next_at is None

    def test_manual_stepping_schedules_nothing(self) -> None:
        """With step 0 only /_fake/advance moves a job."""
        step = advance(make_job("pending"), T0, 0)
        assert step is not None
        assert step.job.next_at is None
        assert not is_due(step.job, T0 + timedelta(days=1))

    @pytest.mark.parametrize(
        ("offset", "due"),
        [pytest.param(-1, False, id="before"), pytest.param(0, True, id="at"), (5, True)],
    )
    def test_is_due(self, offset: int, due: bool) -> None:
        """A job is due from its `next_at` on."""
        job = replace(make_job(), next_at=T0)
        assert is_due(job, T0 + timedelta(seconds=offset)) is due

    @pytest.mark.parametrize(
        ("event", "extra"),
        [
            ("training.started", {"provider": "io.net"}),
            (
                "training.completed",
                {"artifact": f"ft:{MODEL}:ft-1", "metrics": {"loss": 1.12, "tokens": 3250000}},
            ),
            (
                "model.deployed",
                {
                    "deploymentId": "deploy-ft-1",
                    "modelId": f"ft:{MODEL}:ft-1",
                    "artifact": f"ft:{MODEL}:ft-1",
                },
            ),
        ],
    )
    def test_event_data(self, event: str, extra: dict[str, Any]) -> None:
        """Each event's data carries jobId, modelName and what the event tells."""
        stages: dict[str, Stage] = {
            "training.started": "pending",
            "training.completed": "training",
            "model.deployed": "completed",
        }
        step = advance(make_job(stages[event]), T0, 1.0)
        assert step is not None
        assert step.data == {"jobId": "ft-1", "modelName": MODEL} | extra

    def test_failed_event_has_error(self) -> None:
        """training.failed carries an error string."""
        step = advance(make_job("training", "fail"), T0, 1.0)
        assert step is not None
        assert isinstance(step.data["error"], str)
        assert "fail" in step.data["error"]

    @pytest.mark.parametrize(
        ("stage", "status", "progress", "artifact"),
        [
            ("pending", "pending", 0, False),
            ("training", "training", 50, False),
            ("completed", "completed", 100, True),
            ("deployed", "completed", 100, True),
            ("failed", "failed", 50, False),
        ],
    )
    def test_job_view(self, stage: Stage, status: str, progress: int, artifact: bool) -> None:
        """GET's answer uses the public status vocabulary; a deployed job reads completed."""
        view = job_view(make_job(stage, "fail" if stage == "failed" else "ok"))
        assert (view["status"], view["progress"]) == (status, progress)
        assert (view["artifact"] is not None) is artifact
        assert (view["error"] is not None) is (stage == "failed")
        assert set(view) >= {"jobId", "status", "progress", "metrics", "error", "artifact"}

    def test_w3_body(self) -> None:
        """The W3 envelope with a millisecond `timestamp` ending in Z."""
        body = w3_body("training.started", {"jobId": "ft-1"}, T0)
        assert body == {
            "event": "training.started",
            "data": {"jobId": "ft-1"},
            "timestamp": "2025-11-08T14:22:31.250Z",
        }


class TestSwitchPatch:
    def test_partial_patch_keeps_the_rest(self) -> None:
        """Only the named switches change."""
        current = Switches(duplicates=True)
        assert apply_patch(current, {"drop": ["a", "a", "b"]}) == Switches(
            duplicates=True, drop=("a", "b")
        )

    def test_json_round_trip(self) -> None:
        """What GET shows can be posted back unchanged."""
        switches = Switches(drop=("training.completed",), fail_status=429, slow_seconds=0.5)
        assert apply_patch(Switches(), switches_json(switches)) == switches

    @pytest.mark.parametrize(
        "patch",
        [
            pytest.param({"nope": True}, id="unknown"),
            pytest.param({"duplicates": 1}, id="bool-as-int"),
            pytest.param({"drop": "training.completed"}, id="drop-not-list"),
            pytest.param({"drop": [1]}, id="drop-not-names"),
            pytest.param({"fail_status": 200}, id="status-2xx"),
            pytest.param({"fail_status": True}, id="status-bool"),
            pytest.param({"fail_times": 0}, id="times-zero"),
            pytest.param({"slow_seconds": -1}, id="slow-negative"),
            pytest.param({"slow_seconds": "1"}, id="slow-string"),
        ],
    )
    def test_bad_values_are_refused(self, patch: dict[str, Any]) -> None:
        """A senseless value raises SwitchError naming the switch."""
        with pytest.raises(SwitchError, match=next(iter(patch))):
            apply_patch(Switches(), patch)


class TestTakeFailure:
    def test_off(self) -> None:
        """No fail_status: no failure, nothing changes."""
        assert take_failure(Switches()) == (None, Switches())

    def test_429_has_retry_after(self) -> None:
        """429 answers carry Retry-After: 1 and keep failing without fail_times."""
        failure, after = take_failure(Switches(fail_status=429))
        assert failure is not None
        assert (failure.status, failure.headers) == (429, {"Retry-After": "1"})
        assert after == Switches(fail_status=429)

    def test_counts_down_then_normal(self) -> None:
        """fail_times N fails N requests, then the switch clears itself."""
        switches = Switches(fail_status=500, fail_times=2)
        statuses = []
        for _ in range(3):
            failure, switches = take_failure(switches)
            statuses.append(None if failure is None else failure.status)
        assert statuses == [500, 500, None]
        assert switches == Switches()


@pytest.mark.parametrize(
    ("status", "flat", "expected"),
    [
        (401, False, {"error": {"message": "m", "code": "UNAUTHORIZED"}}),
        (402, False, {"error": {"message": "m", "code": "INSUFFICIENT_CREDITS"}}),
        (429, False, {"error": {"message": "m", "code": "RATE_LIMITED"}}),
        (503, False, {"error": {"message": "m", "code": "ERROR"}}),
        (400, True, {"error": "m", "message": "m"}),
    ],
)
def test_error_body(status: int, flat: bool, expected: dict[str, Any]) -> None:
    """Nested O2/I2 error bodies by default, the flat shape on request."""
    assert error_body(status, "m", flat=flat) == expected


@dataclass(frozen=True)
class Hook:
    """A stand-in webhook: only its event matters to the switches."""

    event: str


S = Hook("training.started")
C = Hook("training.completed")
F = Hook("training.failed")
D = Hook("model.deployed")


@pytest.mark.parametrize(
    ("fresh", "held", "switches", "sent", "still_held"),
    [
        pytest.param([S], [], Switches(), [S], [], id="plain"),
        pytest.param([S], [], Switches(duplicates=True), [S, S], [], id="duplicates"),
        pytest.param([C], [], Switches(drop=("training.completed",)), [], [], id="drop"),
        pytest.param([S], [], Switches(reorder=True), [], [S], id="reorder-holds-started"),
        pytest.param([C], [S], Switches(reorder=True), [C, S], [], id="reorder-releases"),
        pytest.param([F], [S], Switches(reorder=True), [F, S], [], id="reorder-after-failed"),
        pytest.param([D], [S], Switches(reorder=True), [D], [S], id="reorder-keeps-waiting"),
        pytest.param([C], [S], Switches(), [S, C], [], id="reorder-switched-off"),
        pytest.param(
            [C], [S], Switches(reorder=True, duplicates=True), [C, C, S, S], [], id="both"
        ),
        pytest.param(
            [C],
            [S],
            Switches(reorder=True, drop=("training.started",)),
            [C],
            [],
            id="reorder-then-drop",
        ),
    ],
)
def test_plan_sends(
    fresh: list[Hook],
    held: list[Hook],
    switches: Switches,
    sent: list[Hook],
    still_held: list[Hook],
) -> None:
    """The switches decide what goes out now, in which order, and what waits."""
    assert plan_sends(fresh, held, switches) == (tuple(sent), tuple(still_held))


@pytest.mark.parametrize(
    ("attempt", "attempts", "delay"),
    [(1, 5, 0.5), (2, 5, 1.0), (4, 5, 4.0), (5, 5, None), (1, 1, None)],
)
def test_retry_delay(attempt: int, attempts: int, delay: float | None) -> None:
    """Exponential backoff from the base, and no retry after the last attempt."""
    assert retry_delay(attempt, base=0.5, attempts=attempts) == delay


class TestInference:
    def test_echo(self) -> None:
        """The answer echoes the prompt and counts its words as tokens."""
        assert completion("m/x", "hello world") == {
            "text": "echo: hello world",
            "tokens": 3,
            "model": "m/x",
            "latency": 1,
        }

    def test_max_tokens_and_metadata(self) -> None:
        """maxTokens cuts the answer; metadata is echoed back."""
        answer = completion("m", "a b c d", max_tokens=2, metadata={"k": 1})
        assert (answer["text"], answer["tokens"], answer["metadata"]) == ("echo: a", 2, {"k": 1})

    def test_batch_counts_accepted(self) -> None:
        """Only items with a non-empty prompt string are accepted."""
        requests = [{"id": "1", "prompt": "p"}, {"id": "2", "prompt": ""}, "x", {"id": "4"}]
        assert batch_answer("batch-1", requests) == {
            "batchId": "batch-1",
            "status": "queued",
            "summary": {"total": 4, "accepted": 1},
        }


class TestCommandConfig:
    def test_defaults(self) -> None:
        """Only --secret is needed; every switch starts off."""
        config = fake_config(build_parser().parse_args(["fake-llmtune", "--secret", "s"]))
        assert (config.secret, config.step_seconds, config.api_key) == ("s", 1.0, None)
        assert config.switches == Switches()
        assert (config.webhook_attempts, config.retry_base_seconds) == (5, 1.0)

    def test_switch_options(self) -> None:
        """Switch options at start become the initial switches."""
        args = build_parser().parse_args(
            [
                "fake-llmtune",
                "--secret=s",
                "--drop=training.completed",
                "--drop=model.deployed",
                "--fail-status=429",
                "--fail-times=2",
                "--duplicates",
                "--slow-seconds=0.5",
            ]
        )
        assert fake_config(args).switches == Switches(
            duplicates=True,
            drop=("training.completed", "model.deployed"),
            fail_status=429,
            fail_times=2,
            slow_seconds=0.5,
        )

    def test_bad_switch_option(self) -> None:
        """A senseless switch option is refused before anything starts."""
        args = build_parser().parse_args(["fake-llmtune", "--secret=s", "--fail-status=200"])
        with pytest.raises(SwitchError):
            fake_config(args)

    @pytest.mark.parametrize(
        "option",
        ["--fail-status=200", "--webhook-attempts=0", "--retry-base-seconds=-1"],
    )
    def test_command_refuses_bad_options(
        self, option: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The command exits 2 with one line naming the problem, and serves nothing."""
        assert main(["fake-llmtune", "--secret=s", option]) == 2
        err = capsys.readouterr().err
        assert err.startswith("llmtune-receiver: fake-llmtune: ")
        assert err.count("\n") == 1
