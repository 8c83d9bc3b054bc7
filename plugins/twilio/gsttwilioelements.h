/* gst-phone-agent: the twilio plugin's elements */
#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS

GST_ELEMENT_REGISTER_DECLARE(twiliosrc);
GST_ELEMENT_REGISTER_DECLARE(twiliosink);

G_END_DECLS
