/* gst-phone-agent: twiliosink, the agent's audio to a Twilio Media Stream */
#pragma once

#include <gst/base/gstbasesink.h>

G_BEGIN_DECLS

#define GST_TYPE_TWILIO_SINK (gst_twilio_sink_get_type())
G_DECLARE_FINAL_TYPE(GstTwilioSink, gst_twilio_sink, GST, TWILIO_SINK, GstBaseSink)

G_END_DECLS
