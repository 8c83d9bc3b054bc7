/* gst-phone-agent: twiliosrc, the caller's audio from a Twilio Media Stream */
#pragma once

#include <gst/base/gstpushsrc.h>

G_BEGIN_DECLS

#define GST_TYPE_TWILIO_SRC (gst_twilio_src_get_type())
G_DECLARE_FINAL_TYPE(GstTwilioSrc, gst_twilio_src, GST, TWILIO_SRC, GstPushSrc)

G_END_DECLS
