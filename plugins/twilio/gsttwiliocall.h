/* gst-phone-agent: finding the call shared by twiliosrc and twiliosink */
#pragma once

#include <gst/gst.h>

#include "pa-call.h"

/* The "phoneagent.call" context dance, as souphttpsrc does for its session:
 * query downstream and upstream peers, then post need-context so the bin
 * (which keeps contexts posted with have-context) or the application can
 * answer with gst_element_set_context(). Returns a new reference or nullptr. */
PaCall *gst_twilio_find_call(GstElement *element, GstPad *pad);

/* Answers a context query for "phoneagent.call" with @call. */
gboolean gst_twilio_answer_context_query(GstQuery *query, PaCall *call);

/* Element-message helpers: running time of the element now. */
GstClockTime gst_twilio_running_time(GstElement *element);
