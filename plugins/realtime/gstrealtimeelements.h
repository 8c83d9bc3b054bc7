/* gst-phone-agent: the realtime plugin's elements */
#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS

GST_ELEMENT_REGISTER_DECLARE(realtimemodel);

G_END_DECLS
