include $(sort $(wildcard $(BR2_EXTERNAL_PIPE_PATH)/package/*/*.mk))
