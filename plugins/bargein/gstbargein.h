/* gst-phone-agent
 * Copyright (C) 2026 gst-phone-agent contributors
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * bargein: decides locally, from the caller's audio, that the caller started
 * talking over the agent.
 */
#pragma once

#include <gst/base/gstbasetransform.h>

G_BEGIN_DECLS

#define GST_TYPE_BARGEIN (gst_bargein_get_type())
G_DECLARE_FINAL_TYPE(GstBargein, gst_bargein, GST, BARGEIN, GstBaseTransform)

#define GST_TYPE_BARGEIN_MODE (gst_bargein_mode_get_type())
GType gst_bargein_mode_get_type(void);

G_END_DECLS
