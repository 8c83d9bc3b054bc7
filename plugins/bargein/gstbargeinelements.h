/* gst-phone-agent: the bargein plugin's elements */
#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS

GST_ELEMENT_REGISTER_DECLARE(bargein);

G_END_DECLS
