from __future__ import annotations

from sandbox.agents import clean_message, policy_for, prices_in, to_action, verify_action
from sandbox.profiles import resolve
from sandbox.schemas import Action, ActionKind, ModelSettings


def test_clean_message_keeps_one_speaker():
    assert clean_message("Jordan: Hi Dana, what brings you here?", "Jordan", "Dana") == "Hi Dana, what brings you here?"
    text = "Happy to help. What is the problem?\nDana: Price.\nJordan: OK."
    assert clean_message(text, "Jordan", "Dana") == "Happy to help. What is the problem?"
    assert clean_message("Dana,\n\nGood to meet you.\n\nMore rambling.", "Jordan", "Dana") == "Dana, Good to meet you."
    assert clean_message("   \n\n  ", "Jordan", "Dana") == ""
    assert len(clean_message("Word. " * 400, "Jordan", "Dana")) <= 700


def test_prices_in_reads_the_usual_ways_of_writing_money():
    assert prices_in("I can do 21,000 USD, or $19.5k for two years, or 20 thousand.") == [21000, 19500, 20000]
    assert prices_in("no numbers here") == []


def test_verify_action_requires_the_words_to_carry_the_action():
    offer = Action(kind=ActionKind.OFFER, price=21000)
    assert verify_action(offer, "I can do 21,000 for two years.") == (offer, None)
    action, note = verify_action(offer, "Let me think about it.")
    assert action.kind is ActionKind.NONE and "not stated" in note
    accept = Action(kind=ActionKind.ACCEPT)
    assert verify_action(accept, "Sounds good, we have a deal.")[0] == accept
    assert verify_action(accept, "I'm so sorry to hear that.")[0].kind is ActionKind.NONE
    leave = Action(kind=ActionKind.WALK_AWAY)
    assert verify_action(leave, "This is a waste of time. Goodbye.")[0] == leave
    assert verify_action(leave, "Tell me more.")[0].kind is ActionKind.NONE


def test_to_action_drops_what_cannot_stand():
    action, notes = to_action("offer", None)
    assert action.kind is ActionKind.NONE and notes
    action, notes = to_action("accept", 500)
    assert action == Action(kind=ActionKind.ACCEPT) and not notes


def test_policy_choice():
    embedded = resolve(ModelSettings(), "http://127.0.0.1:5000/v1")
    assert type(policy_for(embedded)).__name__ == "TwoCallPolicy"
    assert type(policy_for(resolve(ModelSettings(model="openai/gpt-4o-mini")))).__name__ == "OneCallPolicy"
    forced = ModelSettings(model="openai/gpt-4o-mini", turn_mode="two-call")
    assert type(policy_for(resolve(forced))).__name__ == "TwoCallPolicy"


def test_echo_of_the_last_line_is_not_an_answer():
    from sandbox.agents import is_echo

    conversation = [
        {"role": "user", "content": "Victor has joined the call. Greet Victor and ask your first question."}
    ]
    assert is_echo("Greet Victor and ask your first question.", conversation)
    assert not is_echo("Hello Victor, what brings you to Ledgerline today?", conversation)
    assert not is_echo("Greet Victor", [{"role": "assistant", "content": "Greet Victor"}])


def test_a_sentence_cut_off_by_the_token_limit_is_not_said():
    cut = "Hello there, Victor. I can offer 21,000 if you sign for"
    assert clean_message(cut, "J", "V", cut_off=True) == "Hello there, Victor."
    assert clean_message("Hi Victor! What brings you here today? I was", "J", "V", cut_off=True) == (
        "Hi Victor! What brings you here today?"
    )
    assert clean_message("Sure thing", "J", "V", cut_off=True) == "Sure thing"  # nothing ends: kept whole
    assert clean_message("Ok. So what do you", "J", "V", cut_off=True) == "Ok. So what do you"  # too little left
    # a message that ended of itself keeps its last words, punctuated or not
    assert clean_message("Thanks for the call. I can do 21,000 USD", "J", "V") == (
        "Thanks for the call. I can do 21,000 USD"
    )


def test_degenerate_messages_say_why():
    from sandbox.agents import degenerate

    said_before = [
        {"role": "user", "content": "Hello, what do you sell?"},
        {"role": "assistant", "content": "We sell payroll software for growing teams of any size."},
        {"role": "user", "content": "What does it cost for forty people?"},
    ]
    assert degenerate("", said_before) == "empty or unusable message"
    assert degenerate("?!", said_before) == "empty or unusable message"
    assert "echoes" in degenerate("What does it cost for forty people??", said_before)
    assert "echoes" in degenerate("What does it cost for forty people", said_before)  # a near-copy
    assert "own earlier" in degenerate("We sell payroll software for growing teams of any size!", said_before)
    assert degenerate("For forty people it is 24,000 USD a year.", said_before) is None
    offer = [{"role": "user", "content": "I can do 21,000 USD if you sign for two years."}]
    assert degenerate("I can do 20,000 USD if you sign for two years.", offer) is None  # a counter-offer
    assert "echoes" in degenerate("I can do 21,000 USD if you sign for two years!", offer)
    own = [{"role": "assistant", "content": "Our price is 24,000 USD for the year."}, offer[0]]
    assert degenerate("Our price is 23,000 USD for the year.", own) is None  # a concession, not a loop


def test_the_embedded_profile_sends_dry_sampling_as_extra_body():
    embedded = resolve(ModelSettings(), "http://127.0.0.1:5000/v1")
    sampling = embedded.sampling()
    assert sampling["extra_body"]["dry_multiplier"] > 0 and embedded.message_attempts >= 3
    assert "extra_body" not in resolve(ModelSettings(model="openai/gpt-4o-mini")).sampling()


def _two_call_request():
    from sandbox.agents import TurnRequest

    return TurnRequest(
        speaker="rep",
        system_prompt="You are Jordan.",
        conversation=[{"role": "user", "content": "Victor has joined the call. Greet Victor."}],
        own_name="Jordan",
        other_name="Victor",
        standing_offer=None,
        currency="USD",
        seed=5,
    )


def test_a_degenerate_message_is_written_again_with_another_seed():
    import asyncio
    import json

    from tests.fake_provider import FakeProvider, Reply

    script = [
        Reply(content="Victor has joined the call. Greet Victor."),  # an echo of the cue
        # stopped by the token limit (40 of 40 tokens) mid-sentence: the unfinished sentence is not said
        Reply(content="Hi Victor, good to meet you. What made you look at payroll tools? I was", completion_tokens=40),
        Reply(content=json.dumps({"action": "none", "price": None})),
    ]
    with FakeProvider(script) as fake:
        profile = resolve(ModelSettings(max_tokens=40), fake.api_base)
        result = asyncio.run(policy_for(profile).take_turn(_two_call_request()))
    assert result.message == "Hi Victor, good to meet you. What made you look at payroll tools?"
    assert result.action.kind is ActionKind.NONE
    assert [c.error for c in result.calls][:2] == ["message only echoes the other side's last line", None]
    seeds = [r["seed"] for r in fake.requests[:2]]
    assert seeds[0] != seeds[1]
    assert fake.requests[0]["dry_multiplier"] > 0  # extra_body reaches the wire as top-level fields


def test_messages_that_never_stand_fail_the_turn_with_their_reasons():
    import asyncio

    import pytest

    from sandbox.agents import JunkOutputError
    from tests.fake_provider import FakeProvider, Reply

    with FakeProvider([Reply(content="Victor has joined the call. Greet Victor.")]) as fake:
        profile = resolve(ModelSettings(), fake.api_base)
        with pytest.raises(JunkOutputError, match="echoes the other side") as failure:
            asyncio.run(policy_for(profile).take_turn(_two_call_request()))
    assert len(failure.value.calls) == profile.message_attempts == len(fake.requests)
