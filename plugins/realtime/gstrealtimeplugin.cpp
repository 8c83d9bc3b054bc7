/* gst-phone-agent: the realtime plugin (realtimemodel) */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstrealtimeelements.h"

static gboolean plugin_init(GstPlugin *plugin) {
  gboolean ret = FALSE;
  ret |= GST_ELEMENT_REGISTER(realtimemodel, plugin);
  return ret;
}

GST_PLUGIN_DEFINE(GST_VERSION_MAJOR, GST_VERSION_MINOR, realtime,
                  "Realtime speech models (OpenAI Realtime protocol) for phone agents", plugin_init, PACKAGE_VERSION,
                  GST_LICENSE, GST_PACKAGE_NAME, GST_PACKAGE_ORIGIN)
