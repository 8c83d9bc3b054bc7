/* gst-phone-agent: the built-in agent, a copy of agents/receptionist.json
 * (tests/localmodel checks that the two stay identical). */
#include "local-agent.h"

namespace pa::local {

const char *Agent::builtin_json() {
  return R"AGENT(
{
  "name": "Riverside Dental receptionist (local test agent)",
  "greeting": "Thank you for calling Riverside Dental. This is the automated receptionist. How can I help you today?",
  "fallback": [
    "Sorry, I didn't catch that. I can book an appointment, tell you our opening hours, or put you through to a person.",
    "Sorry, could you say that again? For example: I'd like to book an appointment."
  ],
  "reprompt": "Is there anything else I can help you with?",
  "tool_unavailable": "Sorry, I can't reach the calendar from this line. Please call back later.",
  "tool_error": "Sorry, something went wrong on my side: {error}.",
  "recognizer": {
    "agent_lm_weight": 0.3,
    "phrases": [
      "hello",
      "hi there"
    ]
  },
  "entities": {
    "day": {
      "values": {
        "today": "today",
        "tomorrow": "tomorrow",
        "monday": "Monday",
        "tuesday": "Tuesday",
        "wednesday": "Wednesday",
        "thursday": "Thursday",
        "friday": "Friday",
        "saturday": "Saturday",
        "next week": "next week"
      },
      "default": "the next available day"
    },
    "period": {
      "values": {
        "morning": "morning",
        "afternoon": "afternoon",
        "evening": "evening"
      },
      "default": "any time"
    }
  },
  "intents": [
    {
      "name": "book",
      "keywords": ["appointment", "book", "booking", "schedule", "checkup", "check up", "cleaning", "dentist", "toothache"],
      "examples": [
        "i would like to book an appointment",
        "i'd like to make an appointment",
        "can i book an appointment for tomorrow morning",
        "i need to see the dentist",
        "i need a checkup next week",
        "can i schedule a cleaning on friday afternoon"
      ],
      "say": "Let me check the calendar.",
      "call": {
        "name": "findAvailability",
        "arguments": { "day": "{day}", "period": "{period}" }
      },
      "after": "I have {findAvailability.slots}. Would the first one work for you?",
      "on_error": "Sorry, I couldn't find a free slot for {day}. Would another day work?",
      "state": "offered"
    },
    {
      "name": "confirm",
      "when": ["offered"],
      "keywords": ["yes", "yeah", "yep", "sure", "okay", "ok", "fine", "works", "first", "sounds good", "perfect", "great", "please"],
      "examples": ["yes that works for me", "yes please", "the first one please", "sounds good"],
      "say": "Great, I'm booking that for you now.",
      "call": {
        "name": "bookAppointment",
        "arguments": { "slot": "{findAvailability.slots.0}", "reason": "{transcript}" }
      },
      "after": "You're all set for {bookAppointment.slot}. Your confirmation number is {bookAppointment.confirmation}. Is there anything else I can help you with?",
      "on_error": "Sorry, that slot was just taken. Would you like me to look again?",
      "state": "anything_else"
    },
    {
      "name": "second_slot",
      "when": ["offered"],
      "keywords": ["second", "second one", "other one", "the other", "later one"],
      "examples": ["the second one please", "the other one"],
      "say": "Sure, I'm booking the second one.",
      "call": {
        "name": "bookAppointment",
        "arguments": { "slot": "{findAvailability.slots.1}", "reason": "{transcript}" }
      },
      "after": "You're all set for {bookAppointment.slot}. Your confirmation number is {bookAppointment.confirmation}. Is there anything else I can help you with?",
      "state": "anything_else"
    },
    {
      "name": "decline",
      "when": ["offered"],
      "keywords": ["no", "nope", "another", "different", "other day", "doesn't work", "not good"],
      "examples": ["no that doesn't work", "another day please"],
      "say": "No problem. Which day would suit you better?",
      "state": "ask_day"
    },
    {
      "name": "pick_day",
      "when": ["ask_day"],
      "keywords": ["today", "tomorrow", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "next week", "morning", "afternoon"],
      "examples": ["how about thursday", "friday morning please", "next week"],
      "say": "Let me look at {day}.",
      "call": {
        "name": "findAvailability",
        "arguments": { "day": "{day}", "period": "{period}" }
      },
      "after": "On {day} I have {findAvailability.slots}. Would the first one work for you?",
      "on_error": "Sorry, {day} is fully booked. Would another day work?",
      "state": "offered"
    },
    {
      "name": "hours",
      "keywords": ["open", "opening", "hours", "close", "closing", "what time"],
      "examples": ["what time do you open on monday", "what are your opening hours", "when do you close"],
      "say": "We're open Monday to Friday from eight in the morning to six in the evening, and Saturday mornings from nine to twelve.",
      "state": "anything_else"
    },
    {
      "name": "address",
      "keywords": ["where", "address", "located", "location", "parking", "directions"],
      "examples": ["where are you located", "what is your address", "is there parking"],
      "say": "We're at 12 River Street, next to the library. There is free parking behind the building.",
      "state": "anything_else"
    },
    {
      "name": "change_booking",
      "keywords": ["cancel", "reschedule", "change my appointment", "move my appointment"],
      "examples": ["i need to cancel my appointment", "can i reschedule my appointment"],
      "say": "I can't change existing bookings myself, so let me put you through to a colleague.",
      "action": "transfer_to_human",
      "reason": "cancel or reschedule: {transcript}"
    },
    {
      "name": "human",
      "keywords": ["person", "human", "someone", "somebody", "agent", "receptionist", "operator", "representative", "real person", "speak to", "talk to"],
      "examples": ["can i speak to a real person please", "i want to talk to a human", "let me talk to someone"],
      "say": "Of course. Let me put you through to a colleague. Please hold.",
      "action": "transfer_to_human",
      "reason": "caller asked for a person: {transcript}"
    },
    {
      "name": "thanks",
      "keywords": ["thanks", "thank you"],
      "examples": ["thank you", "thanks a lot"],
      "say": "You're welcome! Is there anything else I can help you with?",
      "state": "anything_else"
    },
    {
      "name": "goodbye",
      "keywords": ["bye", "goodbye", "that's all", "that is all", "nothing else", "no thanks", "thank you bye", "thank you goodbye"],
      "examples": ["thank you goodbye", "no thanks that's all", "bye"],
      "say": "Thank you for calling Riverside Dental. Goodbye!",
      "action": "end_call",
      "reason": "caller said goodbye"
    },
    {
      "name": "done",
      "when": ["anything_else"],
      "keywords": ["no", "nope", "nothing", "that's it", "all good", "i'm good"],
      "examples": ["no that's it", "nothing else"],
      "say": "Thank you for calling Riverside Dental. Goodbye!",
      "action": "end_call",
      "reason": "caller has nothing else"
    }
  ]
}
)AGENT";
}

} // namespace pa::local
