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
